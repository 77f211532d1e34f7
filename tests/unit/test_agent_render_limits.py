"""The process-wide bounds around a render: they stop the work and leave no trace behind."""

from __future__ import annotations

import resource
import signal
import time

import pytest

from troupe_agent import render_limits
from troupe_agent.render_limits import TimeLimitExceeded, memory_limit, time_limit


def test_the_time_limit_interrupts_a_busy_loop_and_restores_the_handler() -> None:
    previous = signal.getsignal(signal.SIGALRM)
    started = time.monotonic()
    with pytest.raises(TimeLimitExceeded), time_limit(0.2):
        while True:
            pass
    assert time.monotonic() - started < 5
    assert signal.getsignal(signal.SIGALRM) is previous
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_the_memory_limit_fails_a_big_allocation_and_restores_the_limit() -> None:
    before = resource.getrlimit(resource.RLIMIT_AS)
    with pytest.raises(MemoryError), memory_limit(64 * 2**20):
        bytearray(512 * 2**20)
    assert resource.getrlimit(resource.RLIMIT_AS) == before


def test_the_memory_limit_is_skipped_where_proc_cannot_say(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(render_limits, "_address_space_in_use", lambda: None)
    before = resource.getrlimit(resource.RLIMIT_AS)
    with memory_limit(1):
        assert resource.getrlimit(resource.RLIMIT_AS) == before
