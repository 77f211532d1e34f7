"""What the reconcile core asks its shell to do, and the decision that carries it.

Actions are plain data so the kopf shell and the local runner can execute
the same decisions their own way, and tests can assert on them directly.
Every action is safe to repeat: creating what exists is AlreadyExists (fine),
deleting what is gone is NotFound (fine).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeVar

from troupe_operator.api import AgentSpec, TaskInput, WorkflowSpec, WorkflowStatus


@dataclass(frozen=True)
class CreateTask:
    """Start one attempt of a task.

    The shell creates the input ConfigMap (``task_input`` as JSON under
    INPUT_KEY), then the Job running the agent image in task mode with that
    ConfigMap mounted, ``activeDeadlineSeconds`` set when not None, and the
    API key from ``agent.model.apiKeySecretRef`` in the env variable named by
    ``task_input.api_key_env``. Both carry ``labels`` and the Workflow's
    ownerReference. The task itself writes ``output_config_map``.
    """

    task: str
    attempt: int
    job_name: str
    input_config_map: str
    output_config_map: str
    task_input: TaskInput
    agent_name: str
    agent: AgentSpec
    active_deadline_seconds: int | None
    labels: dict[str, str]


@dataclass(frozen=True)
class DeleteJob:
    """Stop a running attempt (failFast cancellation or workflow timeout), with its pods."""

    name: str
    task: str
    reason: str


class EventType(StrEnum):
    NORMAL = "Normal"
    WARNING = "Warning"


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event on the Workflow."""

    type: EventType
    reason: str
    message: str


@dataclass(frozen=True)
class RecordSpec:
    """Keep the spec a run started with, in a ConfigMap owned by the Workflow.

    Create only: never overwrite an existing one. The shell passes its content
    back as ``Observation.recorded_spec``.
    """

    config_map: str
    spec: WorkflowSpec


Action = CreateTask | DeleteJob | Event | RecordSpec
T = TypeVar("T", CreateTask, DeleteJob, Event, RecordSpec)


@dataclass(frozen=True)
class Decision:
    """The core's answer: actions to execute, the status to write, when to look again.

    ``requeue_after`` is in seconds (a retry backoff, the workflow timeout or
    an awaited Agent); None when only a change of the Jobs can move the run on.
    """

    status: WorkflowStatus
    actions: list[Action] = field(default_factory=list)
    requeue_after: float | None = None

    def of_type(self, kind: type[T]) -> list[T]:
        """The actions of one kind, in order."""
        return [action for action in self.actions if isinstance(action, kind)]
