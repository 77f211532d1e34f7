"""Reading cluster objects as the core's observations.

A Job says whether an attempt is running, done or failed, and why the Job
controller failed it (a deadline, a podFailurePolicy rule); how the task
itself went lives in its pod's termination message, as a TaskReport; why a
pod does not run lives in its waiting state or its PodScheduled condition.
This module maps those into :class:`JobRecord` (what the shell keeps of a
Job, small on purpose: thousands are held in memory), :class:`ObservedJob`
and :class:`PodProblem`, and an Agent's labels and call statistics into its
:class:`AgentProfile`. It never raises on a malformed object: a Job it
cannot read is not a task Job, a pod it cannot read says nothing. Which
Jobs are task Jobs is said once, for every kopf index of them
(``task_job_index``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import kopf
from kopf.on import IndexingDecorator
from pydantic import ValidationError

from troupe_operator.api import (
    ATTEMPT_ANNOTATION,
    EXIT_PERMANENT,
    REPORT_ANNOTATION,
    AgentCallStats,
    TaskReport,
)
from troupe_operator.workflow import (
    ATTEMPT_AGENT_ANNOTATION,
    LABEL_ATTEMPT,
    LABEL_TASK,
    LABEL_WORKFLOW,
    AgentProfile,
    JobState,
    ObservedJob,
    PodProblem,
)

Body = Mapping[str, Any]


def task_job_index(registry: kopf.OperatorRegistry, index: str) -> IndexingDecorator:
    """``@kopf.index`` over task Jobs (those labelled ``troupe.dev/workflow``)."""
    return kopf.index(
        "batch", "v1", "jobs", id=index, labels={LABEL_WORKFLOW: kopf.PRESENT}, registry=registry
    )


def timestamp(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


@dataclass(frozen=True)
class JobRecord:
    """What observing a task Job needs, and nothing more."""

    name: str
    owner_uid: str
    task: str
    attempt: int
    created_at: datetime | None
    started_at: datetime | None
    ready: bool
    outcome: str | None
    """"Complete" or "Failed" once the Job has finished."""
    reason: str = ""
    message: str = ""
    finished_at: datetime | None = None
    agent: str | None = None
    """The Agent the attempt runs on, from the Job's annotation."""

    @property
    def finished(self) -> bool:
        return self.outcome is not None


def job_record(job: Body) -> JobRecord | None:
    """The record of a task Job; None for a Job without Troupe's labels or an owner."""
    metadata = job.get("metadata") or {}
    labels = metadata.get("labels") or {}
    owners = [ref for ref in metadata.get("ownerReferences") or () if ref.get("controller")]
    try:
        task, attempt = str(labels[LABEL_TASK]), int(labels[LABEL_ATTEMPT])
        name, owner_uid = str(metadata["name"]), str(owners[0]["uid"])
    except (KeyError, ValueError, IndexError, TypeError):
        return None
    status = job.get("status") or {}
    outcome, condition = None, {}
    for candidate in status.get("conditions") or ():
        kind = candidate.get("type")
        if kind in ("Complete", "Failed") and candidate.get("status") == "True":
            outcome, condition = kind, candidate
            break
    return JobRecord(
        name=name,
        owner_uid=owner_uid,
        task=task,
        attempt=attempt,
        created_at=timestamp(metadata.get("creationTimestamp")),
        started_at=timestamp(status.get("startTime")),
        ready=bool(status.get("ready")),
        outcome=outcome,
        reason=str(condition.get("reason") or ""),
        message=str(condition.get("message") or ""),
        finished_at=timestamp(status.get("completionTime") or condition.get("lastTransitionTime")),
        agent=str((metadata.get("annotations") or {}).get(ATTEMPT_AGENT_ANNOTATION) or "") or None,
    )


Termination = tuple[str, int | None]
"""A task container's termination message (a TaskReport, or plain words) and exit code."""


def stamped_report(metadata: Body, attempt: int) -> Termination | None:
    """The report an attempt stamped on its output ConfigMap (metadata only), if this one did."""
    annotations = metadata.get("annotations") or {}
    report = annotations.get(REPORT_ANNOTATION)
    if annotations.get(ATTEMPT_ANNOTATION) != str(attempt) or not report:
        return None
    return str(report), 0


def termination_of(pods: Sequence[Body]) -> Termination | None:
    """The newest pod's terminated container: its termination message and exit code."""
    newest = sorted(
        pods, key=lambda pod: (pod.get("metadata") or {}).get("creationTimestamp") or ""
    )
    for pod in reversed(newest):
        for status in (pod.get("status") or {}).get("containerStatuses") or ():
            terminated = (status.get("state") or {}).get("terminated")
            if terminated:
                return str(terminated.get("message") or ""), terminated.get("exitCode")
    return None


def observed_job(record: JobRecord, termination: Termination | None = None) -> ObservedJob:
    """The core's view of a task Job, with how its task ended when it has finished."""
    common: dict[str, Any] = {
        "name": record.name,
        "task": record.task,
        "attempt": record.attempt,
        "started_at": record.started_at,
        "agent": record.agent,
    }
    if not record.finished:
        return ObservedJob(state=JobState.ACTIVE, **common)
    text, exit_code = termination if termination else ("", None)
    report = TaskReport.decode(text) if text else None
    if record.outcome == "Complete":
        return ObservedJob(
            state=JobState.SUCCEEDED, finished_at=record.finished_at, report=report, **common
        )
    plain = text.strip() if report is None else ""
    return ObservedJob(
        state=JobState.FAILED,
        finished_at=record.finished_at,
        message=plain or record.message or record.reason or "the Job failed",
        permanent=record.reason == "PodFailurePolicy" or exit_code == EXIT_PERMANENT,
        deadline_exceeded=record.reason == "DeadlineExceeded",
        report=report,
        **common,
    )


def gone_job(name: str, task: str, attempt: int) -> ObservedJob:
    return ObservedJob(name=name, task=task, attempt=attempt, state=JobState.GONE)


def agent_profile(agent: Body) -> AgentProfile:
    """An Agent's labels and the call statistics in its status (which agentSelector ranks by);
    statistics that do not parse count as none."""
    labels = (agent.get("metadata") or {}).get("labels") or {}
    calls = (agent.get("status") or {}).get("calls")
    try:
        stats = AgentCallStats.model_validate(calls) if calls else None
    except ValidationError:
        stats = None
    return AgentProfile(labels={str(k): str(v) for k, v in labels.items()}, calls=stats)


def pod_problem(pods: Sequence[Body]) -> PodProblem | None:
    """Why the pods of an active Job do not run, if they say: a waiting reason or Unschedulable."""
    for pod in pods:
        status = pod.get("status") or {}
        for container in status.get("containerStatuses") or ():
            waiting = (container.get("state") or {}).get("waiting") or {}
            reason = waiting.get("reason")
            if reason and reason not in ("ContainerCreating", "PodInitializing"):
                return PodProblem(str(reason), str(waiting.get("message") or ""))
        for condition in status.get("conditions") or ():
            if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
                return PodProblem(
                    str(condition.get("reason") or "Unschedulable"),
                    str(condition.get("message") or ""),
                    timestamp(condition.get("lastTransitionTime")),
                )
    return None
