"""Process-wide bounds around one piece of untrusted work: a time budget and a memory ceiling.

A prompt template is user code. The sandbox keeps it from Python's insides and
refuses values that are plainly too big, but nested loops can still run for
hours and a chain of concatenations can still outgrow the pod's memory. These
context managers bound such work in-process, so a hostile template costs only
its own task: an interval timer (``SIGALRM``) raises
:class:`TimeLimitExceeded` out of whatever Python code is running, and a
lowered address-space rlimit makes an allocation beyond the ceiling fail with
``MemoryError`` instead of waking the kernel's OOM killer.

They work on the main thread only (signal handlers can be set nowhere else),
are not reentrant, and restore the previous handler, timer and limit on exit.
The memory ceiling needs Linux's ``/proc`` to know where to put it; elsewhere
(``troupe run`` on a laptop) it is skipped and the sandbox's own size checks
and the time budget remain.
"""

from __future__ import annotations

import resource
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType


class TimeLimitExceeded(BaseException):
    """The time budget ran out. A BaseException, so code that catches Exception (the
    template sandbox, Jinja's error handling) cannot swallow it."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`TimeLimitExceeded` in the body once ``seconds`` (> 0) have passed."""

    def expire(signum: int, frame: FrameType | None) -> None:
        raise TimeLimitExceeded

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextmanager
def memory_limit(extra_bytes: int) -> Iterator[None]:
    """Let the body grow the process's address space by at most ``extra_bytes`` (Linux)."""
    in_use = _address_space_in_use()
    if in_use is None:
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    ceiling = in_use + extra_bytes
    for bound in (soft, hard):
        if bound != resource.RLIM_INFINITY:
            ceiling = min(ceiling, bound)
    resource.setrlimit(resource.RLIMIT_AS, (ceiling, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _address_space_in_use() -> int | None:
    """Bytes of address space the process uses, or None where /proc cannot say."""
    try:
        pages = int(Path("/proc/self/statm").read_text(encoding="ascii").split()[0])
    except OSError:
        return None
    return pages * resource.getpagesize()
