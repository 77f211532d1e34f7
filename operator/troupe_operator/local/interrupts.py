"""SIGINT and SIGTERM as a request to stop ``troupe run``, not a death.

Dying on SIGTERM (what ``timeout``, CI runners and ``kill`` send) would leave
every task process running without a parent, spending tokens, and the
scratch directory behind. While a run goes on, both signals instead call
back into the runner, which kills and waits for every task, records the
interruption and exits ``128 + signal number`` as shells report it (130 for
SIGINT, 143 for SIGTERM). A signal ignored when ``troupe run`` started (as a
shell does for SIGINT in background jobs) stays ignored: this module refuses
to catch what the caller chose to ignore.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Iterator
from typing import Final

STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)


def exit_code(stopped_by: signal.Signals) -> int:
    return 128 + stopped_by.value


@contextlib.contextmanager
def stop_signals(on_signal: Callable[[signal.Signals], None]) -> Iterator[None]:
    """Within the running event loop, call ``on_signal`` for SIGINT and SIGTERM instead."""
    loop = asyncio.get_running_loop()
    previous = {
        sig: handler
        for sig in STOP_SIGNALS
        if (handler := signal.getsignal(sig)) is not signal.SIG_IGN
    }
    for sig in previous:
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            loop.remove_signal_handler(sig)
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
