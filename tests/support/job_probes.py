"""What tests wait for and look at in the Job runner's work: finished Jobs, their Pods.

Built on the `kubernetes` client's typed objects, as the tests read them.
"""

from __future__ import annotations

from typing import Any

from kubernetes.client import BatchV1Api, CoreV1Api, V1Job, V1Pod

from tests.support.waiting import wait_for


def finished_job(batch: BatchV1Api, name: str, timeout: float = 10) -> V1Job:
    """The Job once it has a `Complete` or `Failed` condition."""

    def finished() -> V1Job | None:
        job: V1Job = batch.read_namespaced_job(name, "default")
        conditions = job.status.conditions if job.status else None
        return job if any(c.type in {"Complete", "Failed"} for c in conditions or []) else None

    return wait_for(finished, timeout=timeout, what=f"job {name} to finish")


def active_and_ready(batch: BatchV1Api, name: str) -> tuple[int, int]:
    """The Job's `status.active` and `status.ready` (0 when unset)."""
    status = batch.read_namespaced_job(name, "default").status
    return (status.active or 0, status.ready or 0) if status else (0, 0)


def condition(obj: Any, kind: str) -> Any:
    """The status condition of that type (StopIteration if there is none)."""
    return next(c for c in obj.status.conditions if c.type == kind)


def pods_of(core: CoreV1Api, job_name: str) -> list[V1Pod]:
    return list(core.list_namespaced_pod("default", label_selector=f"job-name={job_name}").items)


def waiting_state(core: CoreV1Api, job_name: str) -> tuple[str, str | None] | None:
    """`(reason, message)` of the Job's Pod's waiting container, if it is waiting."""
    for pod in pods_of(core, job_name):
        statuses = pod.status.container_statuses if pod.status else None
        waiting = statuses[0].state.waiting if statuses and statuses[0].state else None
        if waiting is not None:
            return str(waiting.reason), waiting.message
    return None


def events_about(core: CoreV1Api, name_prefix: str, reason: str) -> list[str]:
    """Messages of the Events with `reason` about objects whose name starts with the prefix."""
    return [
        str(event.message)
        for event in core.list_namespaced_event("default").items
        if event.reason == reason and str(event.involved_object.name).startswith(name_prefix)
    ]
