"""The controller's own health in Prometheus terms, under controller-runtime's names.

Dashboards built for controller-runtime operators read these unchanged:
reconciles by result, reconcile errors, reconcile time, and the work queue's
depth, adds, wait and retries; and Troupe's own count of Events it could not
post. Labels are bounded (the controller's name), never a Workflow's.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge, Histogram

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
QUEUE_DEPTH = Gauge("workqueue_depth", "Keys waiting to be reconciled.", ["name"])
QUEUE_ADDS = Counter("workqueue_adds_total", "Keys handed to workers.", ["name"])
QUEUE_WAIT = Histogram(
    "workqueue_queue_duration_seconds",
    "Time a key waited in the queue before a worker took it.",
    ["name"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 10.0),
)
QUEUE_RETRIES = Counter("workqueue_retries_total", "Keys requeued after an error.", ["name"])
EVENTS_LOST = Counter(
    "troupe_events_lost_total",
    "Events the operator could not post (Events are best effort; each loss is logged).",
)
