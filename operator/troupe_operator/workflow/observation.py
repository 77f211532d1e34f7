"""What the reconcile core is given: one consistent look at a Workflow and its children.

The shell (kopf handlers, or ``troupe run``) gathers this; the core never
reads anything else, not even the clock, so every decision can be replayed
in a unit test.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from troupe_operator.api import AgentSpec, TaskResult, WorkflowSpec, WorkflowStatus


class JobState(StrEnum):
    ACTIVE = "active"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class ObservedJob:
    """One task attempt's Job as it stands.

    ``message`` is the failure reason (the pod's termination message, else the
    Job condition's message); ``permanent`` is set when the task exited with
    EXIT_PERMANENT (Job condition reason PodFailurePolicy); ``deadline_exceeded``
    when the Job failed with reason DeadlineExceeded (activeDeadlineSeconds).
    """

    name: str
    task: str
    attempt: int
    state: JobState
    started_at: datetime | None = None
    finished_at: datetime | None = None
    message: str | None = None
    permanent: bool = False
    deadline_exceeded: bool = False


@dataclass(frozen=True)
class TaskOutput:
    """What the succeeded attempt of a task wrote: the text and its TaskResult."""

    text: str
    result: TaskResult


@dataclass(frozen=True)
class Observation:
    """Everything one reconcile of one Workflow may look at.

    ``outputs`` maps a task name to the output of its succeeded attempt; the
    core only reads it for tasks that just succeeded and for the upstream
    tasks of a task it starts, so the shell may make it lazy. ``agents`` maps
    an Agent name in the Workflow's namespace to its spec; a missing name is
    an Agent that does not exist (yet). ``recorded_spec`` is the spec saved by
    the RecordSpec action when the run started, None while there is none.
    """

    namespace: str
    name: str
    uid: str
    generation: int
    spec: WorkflowSpec
    status: WorkflowStatus
    now: datetime
    jobs: Sequence[ObservedJob] = ()
    outputs: Mapping[str, TaskOutput] = field(default_factory=dict)
    agents: Mapping[str, AgentSpec] = field(default_factory=dict)
    recorded_spec: WorkflowSpec | None = None
