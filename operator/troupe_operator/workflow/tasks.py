"""How one task stands: its previous status folded with the Jobs of its attempts.

Level-triggered: whatever events were missed, the Jobs that exist and the
status written last time are enough to say what the task is doing and what
it needs next (its first attempt, a retry when the backoff has passed). What
status already records stays true: a finished task stays finished whatever
the Jobs say, and an attempt status says has started is never started again.
When its Job is not observed, the task waits and the decision says which Job
to look for; it is failed only once its Job is confirmed gone. Scheduling
across tasks is the core's job; this module only looks at one task.

Skipping, as in Argo: a task whose dependency failed, was cancelled or was
skipped because of a failure is Skipped; a task whose dependencies were *all*
skipped by conditions is Skipped with reason ``ConditionFalse``; a task with a
mix of succeeded and condition-skipped dependencies runs (a join after
branches). A ready task with a ``when`` that is false is Skipped with reason
``ConditionFalse``; the condition is decided once, when the task is ready,
and status records the answer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from troupe_operator.api import ModelCalls, OutputRef, TaskPhase, TaskSpec, TaskStatus, TokenUsage
from troupe_operator.workflow.actions import Event, EventType
from troupe_operator.workflow.failures import (
    JOB_DELETED,
    UNSCHEDULABLE_LIMIT_SECONDS,
    attempt_failure,
    start_failure,
)
from troupe_operator.workflow.naming import WorkflowRef
from troupe_operator.workflow.observation import JobRef, JobState, ObservedJob
from troupe_operator.workflow.run_control import started_again
from troupe_operator.workflow.summary import brief, preview
from troupe_operator.workflow.timing import after, backoff_seconds

FINISHED: Final = frozenset(
    {TaskPhase.SUCCEEDED, TaskPhase.FAILED, TaskPhase.SKIPPED, TaskPhase.CANCELLED}
)
NOT_SUCCEEDED: Final = FINISHED - {TaskPhase.SUCCEEDED}
NO_REPORT: Final = "succeeded, but its pod left no report (preview and token usage unknown)"
CONDITION_FALSE: Final = "ConditionFalse"
"""The reason of a task skipped by its own condition or because every dependency was."""

ConditionCheck = Callable[[], "bool | str"]
"""Decides a ready task's ``when``: whether it holds, or why it cannot be decided (a failure)."""


@dataclass(frozen=True)
class TaskContext:
    """What every task of one reconcile shares."""

    workflow: WorkflowRef
    retry_backoff_seconds: int
    preview_chars: int
    now: datetime


@dataclass(frozen=True)
class TaskOutcome:
    """A task's new status and what it needs next.

    ``start_attempt`` is the attempt to create now if capacity allows;
    ``wake_at`` is when the task needs looking at again (a backed-off retry,
    a pod start limit); ``stop_job`` a Job to delete; ``unobserved_job`` the
    Job of the current attempt, not observed.
    """

    status: TaskStatus
    start_attempt: int | None = None
    wake_at: datetime | None = None
    event: Event | None = None
    stop_job: str | None = None
    unobserved_job: JobRef | None = None


def settle_task(
    spec: TaskSpec,
    previous: TaskStatus,
    jobs: Mapping[int, ObservedJob],
    upstream: Mapping[str, TaskStatus],
    context: TaskContext,
    condition: ConditionCheck = lambda: True,
) -> TaskOutcome:
    """The task's outcome; ``upstream`` holds the new status of each of its dependencies,
    ``condition`` decides its ``when`` once it is ready."""
    if previous.phase in FINISHED:
        return TaskOutcome(previous)
    attempt = max([previous.attempts, *jobs])
    if attempt == 0 or started_again(previous, attempt):
        return _not_started(spec, previous, upstream, condition)
    job = jobs.get(attempt)
    if previous.attempts == attempt and previous.phase == TaskPhase.RETRYING:
        # This attempt's failure is recorded; a Job still shown is on its way out.
        outcome = _retry(previous, attempt, context)
        if job is not None and job.state == JobState.ACTIVE:
            return TaskOutcome(
                outcome.status, outcome.start_attempt, outcome.wake_at, None, job.name
            )
        return outcome
    if job is None:
        name = context.workflow.job_name(spec.name, attempt)
        return TaskOutcome(previous, unobserved_job=JobRef(name, spec.name, attempt))
    if job.state == JobState.ACTIVE:
        return _active(spec, previous, job, context)
    if job.state == JobState.SUCCEEDED:
        return _succeeded(spec, previous, job, context)
    if job.state == JobState.GONE:
        return _failed_attempt(spec, previous, job, JOB_DELETED, False, context)
    return _failed_attempt(
        spec, previous, job, attempt_failure(job, spec.timeout_seconds), job.permanent, context
    )


def condition_skipped(task: TaskStatus) -> bool:
    return task.phase == TaskPhase.SKIPPED and task.reason == CONDITION_FALSE


def failed_for_good(previous: TaskStatus, reason: str, message: str, now: datetime) -> TaskStatus:
    """A task failed with ``reason``, no attempt to come: how a parent ends when its units
    decide it (an instance failed, no candidate succeeded)."""
    return previous.model_copy(
        update={
            "phase": TaskPhase.FAILED,
            "reason": reason,
            "finished_at": now,
            "message": brief(message),
        }
    )


def _not_started(
    spec: TaskSpec,
    previous: TaskStatus,
    upstream: Mapping[str, TaskStatus],
    condition: ConditionCheck,
) -> TaskOutcome:
    phases = {name: upstream[name].phase for name in spec.depends_on if name in upstream}
    blocked = [
        name
        for name, phase in phases.items()
        if phase in NOT_SUCCEEDED and not condition_skipped(upstream[name])
    ]
    if blocked:
        phase = phases[blocked[0]].value.lower()
        message = f"not run: upstream task '{blocked[0]}' {phase}"
        return TaskOutcome(_not_run(previous, TaskPhase.SKIPPED, message))
    if len(phases) < len(spec.depends_on) or any(p not in FINISHED for p in phases.values()):
        return TaskOutcome(previous)
    if spec.depends_on and all(p == TaskPhase.SKIPPED for p in phases.values()):
        message = "not run: every upstream task was skipped by a condition"
        return TaskOutcome(_not_run(previous, TaskPhase.SKIPPED, message, CONDITION_FALSE))
    first = previous.attempts + 1  # a task a retry runs again goes on from its last attempt
    if spec.when is None:
        return TaskOutcome(previous, start_attempt=first)
    holds = condition()
    if isinstance(holds, str):
        failed = _not_run(previous, TaskPhase.FAILED, brief(f"not run: {holds}"))
        event = Event(EventType.WARNING, "TaskFailed", f"task '{spec.name}' failed: {holds}")
        return TaskOutcome(failed, event=event)
    if holds:
        return TaskOutcome(previous, start_attempt=first)
    message = brief(f"not run: condition false: {spec.when}")
    event = Event(EventType.NORMAL, "TaskSkipped", f"task '{spec.name}' {message}")
    skipped = _not_run(previous, TaskPhase.SKIPPED, message, CONDITION_FALSE)
    return TaskOutcome(skipped, event=event)


def _not_run(
    previous: TaskStatus, phase: TaskPhase, message: str, reason: str | None = None
) -> TaskStatus:
    """A task that will not run (now): what an earlier run of it spent stays counted."""
    return previous.model_copy(update={"phase": phase, "message": message, "reason": reason})


def _active(
    spec: TaskSpec, previous: TaskStatus, job: ObservedJob, context: TaskContext
) -> TaskOutcome:
    if job.problem is not None:
        failure = start_failure(job.problem, context.now)
        if failure is not None:
            outcome = _failed_attempt(
                spec, previous, job, failure.message, failure.permanent, context
            )
            return TaskOutcome(
                outcome.status, outcome.start_attempt, outcome.wake_at, outcome.event, job.name
            )
    running = previous.model_copy(
        update={
            "phase": TaskPhase.RUNNING,
            "attempts": job.attempt,
            "job": job.name,
            "started_at": previous.started_at or job.started_at or context.now,
            "message": previous.message if job.attempt > 1 else None,
        }
    )
    since = job.problem.since if job.problem is not None else None
    wake_at = after(since, UNSCHEDULABLE_LIMIT_SECONDS) if since is not None else None
    return TaskOutcome(running, wake_at=wake_at)


def _usage(previous: TaskStatus, job: ObservedJob) -> TokenUsage | None:
    """The task's tokens so far: every attempt's that reported any, summed."""
    result = job.report.result if job.report is not None else None
    if result is None:
        return previous.usage
    return result.usage if previous.usage is None else previous.usage + result.usage


def _calls(previous: TaskStatus, job: ObservedJob) -> ModelCalls | None:
    """The task's model calls so far: every attempt's that reported any, summed."""
    result = job.report.result if job.report is not None else None
    if result is None:
        return previous.calls
    calls = result.model_calls()
    return calls if previous.calls is None else previous.calls + calls


def _succeeded(
    spec: TaskSpec, previous: TaskStatus, job: ObservedJob, context: TaskContext
) -> TaskOutcome:
    report = job.report
    result = report.result if report is not None else None
    size = result.bytes if result is not None else None
    status = previous.model_copy(
        update={
            "phase": TaskPhase.SUCCEEDED,
            "attempts": job.attempt,
            "job": job.name,
            "started_at": previous.started_at or job.started_at or context.now,
            "finished_at": job.finished_at or context.now,
            "message": None if report is not None else NO_REPORT,
            "model": brief(result.model, 100) if result is not None else None,
            "output": OutputRef(
                config_map=context.workflow.output_config_map(spec.name), bytes=size
            ),
            "preview": preview(report.preview or "", context.preview_chars) if report else None,
            "fields": report.fields if report is not None else None,
            "counts": report.counts if report is not None else None,
            "scores": report.scores if report is not None else None,
            "decision": report.decision if report is not None else None,
            "digest": report.digest if report is not None else None,
            "usage": _usage(previous, job),
            "calls": _calls(previous, job),
        }
    )
    told = f"{size} bytes of output" if size is not None else "no report"
    event = Event(
        EventType.NORMAL,
        "TaskSucceeded",
        f"task '{spec.name}' succeeded on attempt {job.attempt} ({told})",
    )
    return TaskOutcome(status, event=event)


def _failed_attempt(
    spec: TaskSpec,
    previous: TaskStatus,
    job: ObservedJob,
    failure: str,
    permanent: bool,
    context: TaskContext,
) -> TaskOutcome:
    message = brief(f"attempt {job.attempt} failed: {failure}")
    status = previous.model_copy(
        update={
            "attempts": job.attempt,
            "job": job.name,
            "started_at": previous.started_at or job.started_at or context.now,
            "finished_at": job.finished_at or context.now,
            "message": message,
            "usage": _usage(previous, job),
            "calls": _calls(previous, job),
        }
    )
    base = previous.retry_base or 0
    if permanent or job.attempt - base > spec.retries:
        failed = status.model_copy(update={"phase": TaskPhase.FAILED})
        event = Event(EventType.WARNING, "TaskFailed", f"task '{spec.name}' failed: {message}")
        return TaskOutcome(failed, event=event)
    outcome = _retry(status.model_copy(update={"phase": TaskPhase.RETRYING}), job.attempt, context)
    wait = backoff_seconds(context.retry_backoff_seconds, job.attempt + 1)
    event = Event(
        EventType.WARNING,
        "RetryScheduled",
        brief(
            f"task '{spec.name}' {message}; attempt {job.attempt + 1} of "
            f"{base + spec.retries + 1} "
            f"in {wait}s"
        ),
    )
    return TaskOutcome(outcome.status, outcome.start_attempt, outcome.wake_at, event)


def _retry(status: TaskStatus, attempt: int, context: TaskContext) -> TaskOutcome:
    """A RETRYING task: the next attempt now if its backoff has passed, else when it has."""
    failed_at = status.finished_at or context.now
    due = after(failed_at, backoff_seconds(context.retry_backoff_seconds, attempt + 1))
    if due <= context.now:
        return TaskOutcome(status, start_attempt=attempt + 1)
    return TaskOutcome(status, wake_at=due)
