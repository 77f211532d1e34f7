"""Workers that take keys off a work queue and reconcile them, retrying every failure.

Generic over the key and the reconcile, so each controller (Workflows,
Agents, Tenants) gets the same rules and the same metrics under its own name
(``controller`` / ``name`` label; the queue reports every add, including the
delayed and rate-limited ones): a reconcile that raises is logged (with
its traceback unless it is an understood API error), counted, and retried
with per-key backoff, at least what the server's ``Retry-After`` asked;
never dropped. A reconcile answers how long until it wants to be looked at
again (None: only when an event says so).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from troupe_operator.controller import metrics
from troupe_operator.controller.kube import ApiError
from troupe_operator.controller.workqueue import QueueShutDown, WorkQueue

logger = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
Reconcile = Callable[[K], Awaitable[float | None]]


class Workers(Generic[K]):
    """A work queue named ``name`` (its metrics' label) and the workers draining it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.queue: WorkQueue[K] = WorkQueue(observer=metrics.QueueMetrics(name))
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, reconcile: Reconcile[K], count: int) -> None:
        self._tasks = [
            asyncio.create_task(self._work(reconcile), name=f"troupe-{self.name}-{index}")
            for index in range(count)
        ]
        metrics.watch_pool(self.name, count, self.queue.__len__, self.queue.processing_since)

    async def stop(self) -> None:
        metrics.unwatch_pool(self.name)
        self.queue.shut_down()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def enqueue(self, key: K) -> None:
        self.queue.add(key)

    async def _work(self, reconcile: Reconcile[K]) -> None:
        while True:
            try:
                key, _ = await self.queue.get()
            except QueueShutDown:
                return
            try:
                with metrics.RECONCILE_TIME.labels(self.name).time():
                    delay = await reconcile(key)
            except Exception as error:  # every failure is retried with backoff, never dropped
                self._failed(key, error)
            else:
                self.queue.forget(key)
                result = "success" if delay is None else "requeue_after"
                metrics.RECONCILES.labels(self.name, result).inc()
                if delay is not None:
                    self.queue.add_after(key, delay)
            finally:
                self.queue.done(key)

    def _failed(self, key: K, error: Exception) -> None:
        metrics.RECONCILES.labels(self.name, "error").inc()
        metrics.RECONCILE_ERRORS.labels(self.name).inc()
        metrics.QUEUE_RETRIES.labels(self.name).inc()
        server_asked = error.retry_after if isinstance(error, ApiError) else None
        delay = self.queue.add_rate_limited(key, at_least=server_asked or 0.0)
        if isinstance(error, ApiError):
            logger.warning(
                "reconcile of %s %s failed, retry in %.2fs: %s", self.name, key, delay, error
            )
        else:
            logger.exception("reconcile of %s %s failed, retry in %.2fs", self.name, key, delay)
