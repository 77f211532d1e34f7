"""Coalescing reconcile triggers and timed requeues, on kopf's event loop.

Ten Job events for one Workflow in a burst need one or two reconciles, not
ten in a row: a trigger that arrives while that Workflow is being reconciled
only marks it dirty, and the running reconcile goes round once more. The
blocking Kubernetes client runs in worker threads, so the loop stays free.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from troupe_operator.controller.cluster import WorkflowKey

Reconcile = Callable[[WorkflowKey], float | None]


class Triggers:
    """Runs reconciles: at most one at a time per Workflow, coalescing the rest."""

    def __init__(self, reconcile: Reconcile) -> None:
        self._reconcile = reconcile
        self._running: set[WorkflowKey] = set()
        self._dirty: set[WorkflowKey] = set()
        self._requeues: dict[WorkflowKey, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def trigger(self, key: WorkflowKey) -> None:
        if key in self._running:
            self._dirty.add(key)
            return
        self._running.add(key)
        self.cancel(key)
        try:
            while True:
                self._dirty.discard(key)
                delay = await asyncio.to_thread(self._reconcile, key)
                if key not in self._dirty:
                    break
        finally:
            self._running.discard(key)
        if delay is not None:
            self._requeue(key, delay)

    def cancel(self, key: WorkflowKey) -> None:
        """Drop a pending requeue (the Workflow is being reconciled, or is gone)."""
        handle = self._requeues.pop(key, None)
        if handle is not None:
            handle.cancel()

    def _requeue(self, key: WorkflowKey, delay: float) -> None:
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._requeues.pop(key, None)
            task = loop.create_task(self.trigger(key))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        self._requeues[key] = loop.call_later(max(delay, 0.0), fire)

    def close(self) -> None:
        for key in list(self._requeues):
            self.cancel(key)
        for task in self._tasks:
            task.cancel()
