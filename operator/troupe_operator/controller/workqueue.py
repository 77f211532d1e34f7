"""A rate-limited work queue of Workflow keys, on kopf's event loop.

kopf calls event handlers once per event and logs and drops whatever they
raise; nothing in it retries a failed reconcile, keeps a key from being
processed twice at once, or requeues after a delay. This is client-go's
rate-limited workqueue, which Kubernetes controllers are built on, in
asyncio: a key is queued at most once; a key being processed is never handed
out again until it is done (a key added meanwhile is processed once more
afterwards); ``add_after`` keeps the sooner of two pending wake-ups; and
``add_rate_limited`` backs off per key exponentially (``base_delay``
doubling to ``max_delay``) until ``forget`` resets it after a success. It
refuses to drop a key: only ``discard`` (the object is gone) does.

It knows nothing of Prometheus: a :class:`QueueObserver` hears each add, take
and finished piece of work (as client-go's queue tells its metrics provider);
its depth (``len``) and ``processing_since`` are read at scrape time.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Hashable
from typing import Generic, Protocol, TypeVar

K = TypeVar("K", bound=Hashable)


class QueueShutDown(Exception):
    """The queue was shut down while waiting for a key."""


class QueueObserver(Protocol):
    """Hears what the queue does, as client-go's queue tells its metrics provider."""

    def added(self) -> None:
        """A key was queued, or marked to be processed again once it is done."""

    def taken(self, waited: float) -> None:
        """A worker took a key that had waited ``waited`` seconds."""

    def finished(self, worked: float) -> None:
        """A worker was done with a key it had held for ``worked`` seconds."""


class WorkQueue(Generic[K]):
    def __init__(
        self,
        base_delay: float = 0.005,
        max_delay: float = 60.0,
        observer: QueueObserver | None = None,
    ) -> None:
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.observer = observer
        self._ready: deque[K] = deque()
        self._queued: set[K] = set()
        self._processing: dict[K, float] = {}
        """Keys being processed, with the monotonic time a worker took each."""
        self._dirty: set[K] = set()
        self._timers: dict[K, tuple[float, asyncio.TimerHandle]] = {}
        self._failures: dict[K, int] = {}
        self._added_at: dict[K, float] = {}
        self._wakeup = asyncio.Event()
        self._shut_down = False

    def __len__(self) -> int:
        """Keys ready to be processed (the queue's depth)."""
        return len(self._ready)

    def add(self, key: K) -> None:
        """Process ``key`` as soon as a worker is free (once, however often it is added)."""
        if self._shut_down:
            return
        if key in self._processing:
            if key in self._dirty:
                return
            self._dirty.add(key)
        elif not self._push(key):
            return
        if self.observer is not None:
            self.observer.added()

    def _push(self, key: K) -> bool:
        """Put ``key`` in line unless it is there already; whether it was put."""
        if key in self._queued:
            return False
        self._queued.add(key)
        self._added_at[key] = time.monotonic()
        self._ready.append(key)
        self._wakeup.set()
        return True

    def add_after(self, key: K, delay: float) -> None:
        """Add ``key`` after ``delay`` seconds, unless it is already due sooner."""
        if self._shut_down:
            return
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        due = loop.time() + delay
        pending = self._timers.get(key)
        if pending is not None:
            if pending[0] <= due:
                return
            pending[1].cancel()
        self._timers[key] = (due, loop.call_at(due, self._fire, key))

    def add_rate_limited(self, key: K, at_least: float = 0.0) -> float:
        """Add ``key`` after its backoff, which doubles with each call; the delay chosen.

        A sooner wake-up already pending is kept, unless it comes before
        ``at_least``, a wait the server asked for (Retry-After), which wins over
        both it and a shorter backoff.
        """
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        delay = max(min(self.base_delay * 2.0 ** min(failures, 64), self.max_delay), at_least)
        pending = self._timers.get(key)
        asked_until = asyncio.get_running_loop().time() + at_least
        if at_least and pending is not None and pending[0] < asked_until:
            pending[1].cancel()
            del self._timers[key]
        self.add_after(key, delay)
        return delay

    def failures(self, key: K) -> int:
        return self._failures.get(key, 0)

    def forget(self, key: K) -> None:
        """Reset ``key``'s backoff (it was processed successfully)."""
        self._failures.pop(key, None)

    def discard(self, key: K) -> None:
        """Drop every trace of ``key``: its object is gone."""
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer[1].cancel()
        self._failures.pop(key, None)
        self._dirty.discard(key)
        if key in self._queued:
            self._queued.discard(key)
            self._added_at.pop(key, None)
            self._ready.remove(key)

    async def get(self) -> tuple[K, float]:
        """The next key and how long it waited; the caller must call ``done(key)``."""
        while not self._ready:
            if self._shut_down:
                raise QueueShutDown()
            self._wakeup.clear()
            await self._wakeup.wait()
        key = self._ready.popleft()
        self._queued.discard(key)
        now = time.monotonic()
        self._processing[key] = now
        waited = now - self._added_at.pop(key, now)
        if self.observer is not None:
            self.observer.taken(waited)
        return key, waited

    def done(self, key: K) -> None:
        """``key`` was processed; if it was added meanwhile, it is queued again."""
        taken = self._processing.pop(key, None)
        if taken is not None and self.observer is not None:
            self.observer.finished(time.monotonic() - taken)
        if key in self._dirty:
            self._dirty.discard(key)
            if not self._shut_down:
                self._push(key)  # counted as added when it was marked

    def processing_since(self) -> list[float]:
        """The monotonic times at which the keys being processed were taken.

        Safe to call from another thread (the metrics endpoint's): the copy is
        made in one step, without running Python code in between.
        """
        return list(self._processing.values())

    def shut_down(self) -> None:
        """Stop handing out keys; pending wake-ups are cancelled."""
        self._shut_down = True
        for _, timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._wakeup.set()

    def _fire(self, key: K) -> None:
        self._timers.pop(key, None)
        self.add(key)
