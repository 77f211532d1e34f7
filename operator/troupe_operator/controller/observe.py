"""Reading cluster objects as the core's observations.

A Job says whether an attempt is running, done or failed, and why the Job
controller failed it (a deadline, a podFailurePolicy rule); the reason the
task gave lives in its pod's termination message. This module maps both into
an :class:`ObservedJob`, and an output ConfigMap into a :class:`TaskOutput`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from troupe_operator.api import EXIT_PERMANENT, OUTPUT_KEY, RESULT_KEY, TaskResult
from troupe_operator.workflow.naming import LABEL_ATTEMPT, LABEL_TASK
from troupe_operator.workflow.observation import JobState, ObservedJob, TaskOutput

Body = Mapping[str, Any]


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _finished(job: Body) -> tuple[str, Body] | None:
    """The Job's terminal condition ("Complete" or "Failed") when it has one."""
    for condition in job.get("status", {}).get("conditions") or ():
        if condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True":
            return condition["type"], condition
    return None


def is_finished(job: Body) -> bool:
    return _finished(job) is not None


def _termination(pods: Sequence[Body]) -> tuple[str | None, int | None]:
    """The newest pod's container termination message and exit code."""
    newest = sorted(pods, key=lambda pod: pod.get("metadata", {}).get("creationTimestamp") or "")
    for pod in reversed(newest):
        for status in pod.get("status", {}).get("containerStatuses") or ():
            terminated = (status.get("state") or {}).get("terminated")
            if terminated:
                message = (terminated.get("message") or "").strip() or None
                return message, terminated.get("exitCode")
    return None, None


def observed_job(job: Body, pods: Sequence[Body] = ()) -> ObservedJob | None:
    """The core's view of a task Job; None for a Job without Troupe's labels."""
    labels = job.get("metadata", {}).get("labels") or {}
    try:
        task, attempt = labels[LABEL_TASK], int(labels[LABEL_ATTEMPT])
    except (KeyError, ValueError):
        return None
    status = job.get("status") or {}
    common = {
        "name": job["metadata"]["name"],
        "task": task,
        "attempt": attempt,
        "started_at": _time(status.get("startTime")),
    }
    finished = _finished(job)
    if finished is None:
        return ObservedJob(state=JobState.ACTIVE, **common)
    kind, condition = finished
    finished_at = _time(status.get("completionTime") or condition.get("lastTransitionTime"))
    if kind == "Complete":
        return ObservedJob(state=JobState.SUCCEEDED, finished_at=finished_at, **common)
    reason = condition.get("reason") or ""
    message, exit_code = _termination(pods)
    return ObservedJob(
        state=JobState.FAILED,
        finished_at=finished_at,
        message=message or condition.get("message") or reason or "the Job failed",
        permanent=reason == "PodFailurePolicy" or exit_code == EXIT_PERMANENT,
        deadline_exceeded=reason == "DeadlineExceeded",
        **common,
    )


def task_output(config_map: Body) -> TaskOutput | None:
    """An output ConfigMap as the core's TaskOutput; None if it is not a complete one."""
    data = config_map.get("data") or {}
    if OUTPUT_KEY not in data or RESULT_KEY not in data:
        return None
    try:
        result = TaskResult.model_validate_json(data[RESULT_KEY])
    except ValidationError:
        return None
    return TaskOutput(text=data[OUTPUT_KEY], result=result)
