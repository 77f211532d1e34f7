"""What the reconcile core asks its shell to do, and the decision that carries it.

Actions are plain data so the kopf shell and the local runner can execute
the same decisions their own way, and tests can assert on them directly.
Every action is safe to repeat: creating what exists (and is this run's) is
success, deleting what is gone is success. ``Action`` is a closed union:
shells dispatch on it with ``assert_never``, so a new kind of action that a
shell does not execute fails type-checking.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, TypeVar

from troupe_operator.api import TaskInput, WorkflowSpec, WorkflowStatus

if TYPE_CHECKING:
    from troupe_operator.workflow.observation import JobRef


@dataclass(frozen=True)
class PrepareRun:
    """Set a run up before its first Job: the identity its pods use, then its recorded spec.

    The shell creates the ServiceAccount ``service_account`` with a Role that
    lets it read and write exactly the ConfigMaps in ``outputs`` (this run's
    task outputs) and nothing else, then the ConfigMap ``spec_config_map``
    holding ``spec``, which task pods mount. Create only: an existing object
    of this run is kept. The shell passes the recorded spec back as
    ``Observation.recorded_spec``.
    """

    spec_config_map: str
    spec: WorkflowSpec
    service_account: str
    outputs: tuple[str, ...]


@dataclass(frozen=True)
class CreateTask:
    """Start one attempt of a task: create its Job.

    The Job runs the agent image in task mode as ``service_account``, with
    ``task_input`` as JSON in the environment variable ``INPUT_ENV``, the
    run's spec ConfigMap ``spec_config_map`` mounted read-only at
    ``SPEC_MOUNT``, ``activeDeadlineSeconds`` when not None, and the API key
    from the Agent's ``model.apiKeySecretRef`` in the variable named by
    ``task_input.api_key_env``. It carries ``labels`` and the Workflow's
    ownerReference. The task itself writes ``task_input.output``.
    """

    task: str
    attempt: int
    job_name: str
    task_input: TaskInput
    service_account: str
    spec_config_map: str
    active_deadline_seconds: int | None
    labels: dict[str, str]


@dataclass(frozen=True)
class GrantReads:
    """Let the run's task identity ``service_account`` get these cache entries, by name.

    A unit served from the cache (``troupe_operator.workflow.memo``) has its output in a
    cache entry, not in one of the run's outputs, and the Role ``PrepareRun`` made grants
    only those. Before any Job that may read one starts, the shell adds ``get`` on exactly
    ``config_maps`` (all the run's entries so far, at most one per unit) to that Role:
    read only, so no run can alter what another will be served. Idempotent.
    """

    service_account: str
    config_maps: tuple[str, ...]


@dataclass(frozen=True)
class DeleteJob:
    """Stop an attempt (failFast, the workflow timeout, a pod that cannot start), with its pods."""

    name: str
    task: str
    reason: str


class EventType(StrEnum):
    NORMAL = "Normal"
    WARNING = "Warning"


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event on the Workflow.

    ``routine`` marks per-attempt chatter (a task started) that shells post
    only when asked to: by default a run posts at most one Event per task.
    """

    type: EventType
    reason: str
    message: str
    routine: bool = False


Action = PrepareRun | GrantReads | CreateTask | DeleteJob | Event
T = TypeVar("T", PrepareRun, GrantReads, CreateTask, DeleteJob, Event)


@dataclass(frozen=True)
class Decision:
    """The core's answer: actions to execute, the status to write, when to look again.

    ``requeue_after`` is in seconds (a retry backoff, the workflow timeout, a
    pod start limit); None when only a change of the Jobs can move the run on.
    ``waiting_for_agents`` names the missing Agents ready tasks wait for;
    ``waiting_for_any_agent`` says a ready task waits for an Agent its
    ``agentSelector`` matches, which any Agent of the namespace may become;
    ``unobserved_jobs`` the Jobs status says were created but that were not
    observed: the shell confirms whether they exist, since the core never
    guesses. ``held_back`` counts the attempts that could start but for the
    Tenant's limits or the shell's own slots, and ``held_by`` names the limit
    (TenantConcurrencyLimit, TokenBudgetExceeded, or Parallelism for
    ``Observation.free_slots``): the shell wakes the run when that limit frees.
    ``waiting`` names each ready task this decision did not start, with what
    held it back (Parallelism, AgentNotFound, NoMatchingAgent, TenantConcurrencyLimit,
    TokenBudgetExceeded, NamespaceNotTenanted, Suspended, AgentConcurrencyLimit), for the
    shell's metrics. ``held_by_agent`` counts the attempts held back by each Agent's
    ``model.maxConcurrency`` (``Observation.agent_slots``): the shell wakes the run when
    that Agent's attempts end.
    """

    status: WorkflowStatus
    actions: list[Action] = field(default_factory=list)
    requeue_after: float | None = None
    waiting_for_agents: frozenset[str] = frozenset()
    waiting_for_any_agent: bool = False
    unobserved_jobs: tuple[JobRef, ...] = ()
    held_back: int = 0
    held_by: str | None = None
    waiting: Mapping[str, str] = field(default_factory=dict)
    held_by_agent: Mapping[str, int] = field(default_factory=dict)

    def of_type(self, kind: type[T]) -> list[T]:
        """The actions of one kind, in order."""
        return [action for action in self.actions if isinstance(action, kind)]
