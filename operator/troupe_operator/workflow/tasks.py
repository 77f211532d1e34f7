"""How one task stands: its previous status folded with the Jobs of its attempts.

Level-triggered: whatever events were missed, the Jobs that exist and the
status written last time are enough to say what the task is doing and what
it needs next (its first attempt, a retry when the backoff has passed, or
the same attempt again when its Job vanished). Scheduling across tasks is
the core's job; this module only looks at one task.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from troupe_operator.api import OutputRef, TaskPhase, TaskSpec, TaskStatus
from troupe_operator.workflow.actions import Event, EventType
from troupe_operator.workflow.failures import MISSING_OUTPUT, attempt_failure
from troupe_operator.workflow.naming import output_config_map_name
from troupe_operator.workflow.observation import JobState, ObservedJob, TaskOutput
from troupe_operator.workflow.summary import brief, preview
from troupe_operator.workflow.timing import after, backoff_seconds

FINISHED: Final = frozenset(
    {TaskPhase.SUCCEEDED, TaskPhase.FAILED, TaskPhase.SKIPPED, TaskPhase.CANCELLED}
)
NOT_SUCCEEDED: Final = FINISHED - {TaskPhase.SUCCEEDED}


@dataclass(frozen=True)
class TaskContext:
    """What every task of one reconcile shares."""

    workflow: str
    retry_backoff_seconds: int
    preview_chars: int
    now: datetime


@dataclass(frozen=True)
class TaskOutcome:
    """A task's new status and what it needs next.

    ``start_attempt`` is the attempt to create now if capacity allows;
    ``retry_at`` is when a backed-off retry becomes due.
    """

    status: TaskStatus
    start_attempt: int | None = None
    retry_at: datetime | None = None
    event: Event | None = None


def settle_task(
    spec: TaskSpec,
    previous: TaskStatus,
    jobs: Mapping[int, ObservedJob],
    upstream: Mapping[str, TaskPhase],
    outputs: Mapping[str, TaskOutput],
    context: TaskContext,
) -> TaskOutcome:
    """The task's outcome; ``upstream`` holds the new phase of each of its dependencies."""
    if previous.phase in FINISHED:
        return TaskOutcome(previous)
    attempt = max([previous.attempts, *jobs])
    if attempt == 0:
        return _not_started(spec, previous, upstream)
    job = jobs.get(attempt)
    if job is None:
        if previous.phase == TaskPhase.RETRYING:
            return _retry(previous, attempt, previous.message or "", context)
        # Status says this attempt started, but its Job is gone or not seen yet:
        # ask for the same name again, which is harmless if it exists.
        return TaskOutcome(previous, start_attempt=attempt)
    if job.state == JobState.ACTIVE:
        running = previous.model_copy(
            update={
                "phase": TaskPhase.RUNNING,
                "attempts": attempt,
                "job": job.name,
                "started_at": previous.started_at or job.started_at or context.now,
                "message": previous.message if attempt > 1 else None,
            }
        )
        return TaskOutcome(running)
    output = outputs.get(spec.name) if job.state == JobState.SUCCEEDED else None
    if output is not None:
        return _succeeded(spec, previous, job, output, context)
    if job.state == JobState.SUCCEEDED:
        failure = MISSING_OUTPUT
    else:
        failure = attempt_failure(job, spec.timeout_seconds)
    return _failed_attempt(spec, previous, job, failure, context)


def _not_started(
    spec: TaskSpec, previous: TaskStatus, upstream: Mapping[str, TaskPhase]
) -> TaskOutcome:
    blocked = [name for name in spec.depends_on if upstream.get(name) in NOT_SUCCEEDED]
    if blocked:
        phase = upstream[blocked[0]].value.lower()
        skipped = TaskStatus(
            phase=TaskPhase.SKIPPED, message=f"not run: upstream task '{blocked[0]}' {phase}"
        )
        return TaskOutcome(skipped)
    ready = all(upstream.get(name) == TaskPhase.SUCCEEDED for name in spec.depends_on)
    return TaskOutcome(previous, start_attempt=1 if ready else None)


def _succeeded(
    spec: TaskSpec,
    previous: TaskStatus,
    job: ObservedJob,
    output: TaskOutput,
    context: TaskContext,
) -> TaskOutcome:
    result = output.result
    size = result.bytes or len(output.text.encode())
    status = previous.model_copy(
        update={
            "phase": TaskPhase.SUCCEEDED,
            "attempts": job.attempt,
            "job": job.name,
            "started_at": previous.started_at or job.started_at or context.now,
            "finished_at": job.finished_at or context.now,
            "message": None,
            "model": brief(result.model, 100),
            "output": OutputRef(
                config_map=output_config_map_name(context.workflow, spec.name, job.attempt),
                bytes=size,
            ),
            "preview": preview(output.text, context.preview_chars),
            "usage": result.usage,
        }
    )
    event = Event(
        EventType.NORMAL,
        "TaskSucceeded",
        f"task '{spec.name}' succeeded on attempt {job.attempt} ({size} bytes of output)",
    )
    return TaskOutcome(status, event=event)


def _failed_attempt(
    spec: TaskSpec,
    previous: TaskStatus,
    job: ObservedJob,
    failure: str,
    context: TaskContext,
) -> TaskOutcome:
    message = brief(f"attempt {job.attempt} failed: {failure}")
    already_seen = previous.attempts == job.attempt and previous.phase == TaskPhase.RETRYING
    finished_at = previous.finished_at if already_seen else None
    status = previous.model_copy(
        update={
            "attempts": job.attempt,
            "job": job.name,
            "started_at": previous.started_at or job.started_at or context.now,
            "finished_at": finished_at or job.finished_at or context.now,
            "message": message,
        }
    )
    if job.permanent or job.attempt > spec.retries:
        failed = status.model_copy(update={"phase": TaskPhase.FAILED})
        event = Event(EventType.WARNING, "TaskFailed", f"task '{spec.name}' failed: {message}")
        return TaskOutcome(failed, event=event)
    outcome = _retry(status, job.attempt, message, context)
    if already_seen:
        return outcome
    wait = backoff_seconds(context.retry_backoff_seconds, job.attempt + 1)
    event = Event(
        EventType.WARNING,
        "RetryScheduled",
        brief(
            f"task '{spec.name}' {message}; attempt {job.attempt + 1} of {spec.retries + 1} "
            f"in {wait}s"
        ),
    )
    return TaskOutcome(outcome.status, outcome.start_attempt, outcome.retry_at, event)


def _retry(status: TaskStatus, attempt: int, message: str, context: TaskContext) -> TaskOutcome:
    failed_at = status.finished_at or context.now
    due = after(failed_at, backoff_seconds(context.retry_backoff_seconds, attempt + 1))
    retrying = status.model_copy(update={"phase": TaskPhase.RETRYING, "message": message})
    if due <= context.now:
        return TaskOutcome(retrying, start_attempt=attempt + 1)
    return TaskOutcome(retrying, retry_at=due)
