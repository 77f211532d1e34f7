"""The controllers' own health in Prometheus terms, under controller-runtime's names.

Dashboards built for controller-runtime operators read these unchanged:
reconciles by result, reconcile errors, reconcile time, the work queue's
depth, adds, wait, work time, retries and the age of the work in progress,
and the workers busy and available, each under the controller's name
(``workflow``, ``agent``, ``tenant``); plus Troupe's own count of the
Kubernetes API calls that failed and of the Events it could not post. Labels
are bounded (a controller's name, a verb, a resource type, a status code),
never an object's name.

The queue's depth and the age of the work in progress are read when
Prometheus scrapes (:class:`_WorkerPools`), from the queues themselves, so
they are never stale; everything else is counted as it happens.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

CONTROLLER: Final = "workflow"

RECONCILES = Counter(
    "controller_runtime_reconcile_total",
    "Reconciles per controller and result (success, error, requeue_after).",
    ["controller", "result"],
)
RECONCILE_ERRORS = Counter(
    "controller_runtime_reconcile_errors_total",
    "Reconciles that raised, per controller; each is retried with backoff.",
    ["controller"],
)
RECONCILE_TIME = Histogram(
    "controller_runtime_reconcile_time_seconds",
    "Time one reconcile took, per controller.",
    ["controller"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
QUEUE_ADDS = Counter(
    "workqueue_adds_total",
    "Keys queued, or marked to be reconciled again while being reconciled, per queue.",
    ["name"],
)
QUEUE_WAIT = Histogram(
    "workqueue_queue_duration_seconds",
    "Time a key waited in the queue before a worker took it.",
    ["name"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 10.0),
)
QUEUE_WORK = Histogram(
    "workqueue_work_duration_seconds",
    "Time a worker held a key (its reconcile), per queue.",
    ["name"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
QUEUE_RETRIES = Counter("workqueue_retries_total", "Keys requeued after an error.", ["name"])
API_ERRORS = Counter(
    "troupe_api_errors_total",
    "Kubernetes API calls of the controllers that failed, by verb, resource and status code "
    "(an HTTP status, or timeout / connection when no answer came). Includes the answers the "
    "controllers expect and handle: 404 on a read, 409 AlreadyExists on a create.",
    ["verb", "resource", "code"],
)
CACHE_LOOKUPS = Counter(
    "troupe_cache_lookups_total",
    "Memoized task units looked up in their namespace's cache: result hit (served, no Job) or "
    "miss (a Job started that caches its output).",
    ["namespace", "result"],
)
EVENTS_LOST = Counter(
    "troupe_events_lost_total",
    "Events the operator could not post (Events are best effort; each loss is logged).",
)


@dataclass(frozen=True)
class QueueMetrics:
    """What one work queue reports, as client-go's queue metrics provider does."""

    name: str

    def added(self) -> None:
        QUEUE_ADDS.labels(self.name).inc()

    def taken(self, waited: float) -> None:
        QUEUE_WAIT.labels(self.name).observe(waited)

    def finished(self, worked: float) -> None:
        QUEUE_WORK.labels(self.name).observe(worked)


@dataclass(frozen=True)
class _Pool:
    workers: int
    depth: Callable[[], int]
    processing_since: Callable[[], list[float]]


_POOLS: dict[str, _Pool] = {}


def watch_pool(
    name: str, workers: int, depth: Callable[[], int], processing_since: Callable[[], list[float]]
) -> None:
    """Report the queue and workers of controller ``name`` until :func:`unwatch_pool`."""
    _POOLS[name] = _Pool(workers, depth, processing_since)


def unwatch_pool(name: str) -> None:
    _POOLS.pop(name, None)


class _WorkerPools(Collector):
    """The gauges read at scrape time, in the metrics endpoint's thread.

    Each read copies what it needs in one step (``list`` of a dict's values),
    so a queue changed meanwhile on the event loop never breaks a scrape.
    """

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return self._families()

    def collect(self) -> Iterable[GaugeMetricFamily]:
        families = self._families()
        depth, longest, unfinished, active, most = families
        now = time.monotonic()
        for name, pool in list(_POOLS.items()):
            since = pool.processing_since()
            ages = [max(0.0, now - taken) for taken in since]
            depth.add_metric([name], pool.depth())
            longest.add_metric([name], max(ages, default=0.0))
            unfinished.add_metric([name], sum(ages))
            active.add_metric([name], len(ages))
            most.add_metric([name], pool.workers)
        return families

    @staticmethod
    def _families() -> list[GaugeMetricFamily]:
        return [
            GaugeMetricFamily(
                "workqueue_depth", "Keys waiting to be reconciled, per queue.", labels=["name"]
            ),
            GaugeMetricFamily(
                "workqueue_longest_running_processor_seconds",
                "How long the longest reconcile in progress has run, per queue.",
                labels=["name"],
            ),
            GaugeMetricFamily(
                "workqueue_unfinished_work_seconds",
                "Seconds of reconciling in progress, not yet finished, summed over the workers.",
                labels=["name"],
            ),
            GaugeMetricFamily(
                "controller_runtime_active_workers",
                "Workers reconciling right now, per controller.",
                labels=["controller"],
            ),
            GaugeMetricFamily(
                "controller_runtime_max_concurrent_reconciles",
                "Workers of each controller (TROUPE_WORKERS).",
                labels=["controller"],
            ),
        ]


REGISTRY.register(_WorkerPools())
