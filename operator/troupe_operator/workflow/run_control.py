"""Retrying a failed run in place: which tasks run again, and what is kept.

``troupe retry`` (the ``troupe.dev/retry`` annotation, ``api.run_control``) turns a
Failed run back into a running one. Succeeded tasks keep their status and outputs and
are never requested again: tokens are the cost of a run. Every other task runs again:
one that ran starts its next attempt (its Jobs are named by attempt, so the old ones
are never reused), keeping its attempts, tokens and calls, and its ``retries`` count
afresh from ``retry_base``; one that never ran (skipped, refused) starts over; an
expanded task keeps its expansion and runs its unfinished instances again. Each request
is answered once (status ``retryRequest``): one that comes while the run is not Failed
is refused with a Warning, so a stale annotation never retries a later failure. Stop
and suspend need no state here: the core reads them from the observation each time.
"""

from __future__ import annotations

from typing import Final

from troupe_operator.api import TaskPhase, TaskStatus, WorkflowPhase, WorkflowStatus
from troupe_operator.workflow.actions import Event, EventType
from troupe_operator.workflow.summary import brief

RETRIED: Final = "WorkflowRetried"
RETRY_REFUSED: Final = "RetryRefused"


def answer_retry(
    status: WorkflowStatus, request: str | None
) -> tuple[WorkflowStatus, Event | None]:
    """The status once ``request`` is answered, and the Event saying how; unchanged if it
    was answered before (or there is none)."""
    if request is None or request == status.retry_request:
        return status, None
    if status.phase != WorkflowPhase.FAILED:
        shown = status.phase.value if status.phase else "not started"
        message = brief(f"retry refused: the run is {shown}; only a Failed run can be retried")
        answered = status.model_copy(update={"retry_request": request})
        return answered, Event(EventType.WARNING, RETRY_REFUSED, message)
    tasks = {name: _again(task) for name, task in status.tasks.items()}
    again = sum(1 for name, task in tasks.items() if task is not status.tasks[name])
    kept = len(tasks) - again
    retried = status.model_copy(
        update={
            "phase": WorkflowPhase.RUNNING,
            "finished_at": None,
            "message": f"retried: {again} task(s) run again, {kept} kept",
            "tasks": tasks,
            "retries": status.retries + 1,
            "retry_request": request,
        }
    )
    message = f"retry {retried.retries}: {again} task(s) run again, {kept} succeeded kept"
    return retried, Event(EventType.NORMAL, RETRIED, message)


def _again(task: TaskStatus) -> TaskStatus:
    if task.phase == TaskPhase.SUCCEEDED:
        return task
    if task.items is not None:  # an expanded task: its instances say what runs again
        return task.model_copy(
            update={"phase": TaskPhase.RUNNING, "finished_at": None, "reason": None}
        )
    if not task.attempts:
        return TaskStatus()
    return task.model_copy(
        update={
            "phase": TaskPhase.PENDING,
            "retry_base": task.attempts,
            "job": None,
            "finished_at": None,
            "reason": None,
            "message": brief(f"to run again; before the retry: {task.message or task.phase}"),
        }
    )


def started_again(task: TaskStatus, attempt: int) -> bool:
    """Whether ``task`` is one a retry made run again, not yet started anew."""
    return task.phase == TaskPhase.PENDING and task.retry_base == attempt
