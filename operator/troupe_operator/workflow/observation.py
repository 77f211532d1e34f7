"""What the reconcile core is given: one consistent look at a Workflow and its children.

The shell (kopf handlers, or ``troupe run``) gathers this; the core never
reads anything else, not even the clock, so every decision can be replayed
in a unit test. No task data is in here: of a finished attempt the core sees
only the short report its pod left in its termination message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from troupe_operator.api import (
    AgentCallStats,
    AgentSpec,
    ResolvedFrom,
    TaskReport,
    WorkflowSpec,
    WorkflowStatus,
)
from troupe_operator.workflow.actions import CreateTask, PrepareRun
from troupe_operator.workflow.memo import CacheEntry


class JobState(StrEnum):
    ACTIVE = "active"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    GONE = "gone"
    """Deleted before it finished, by someone other than the core (confirmed, not guessed)."""


@dataclass(frozen=True)
class JobRef:
    """A Job of one attempt, by name (and the Agent it runs on, when the shell knows)."""

    name: str
    task: str
    attempt: int
    agent: str | None = None


@dataclass(frozen=True)
class PodProblem:
    """Why an active Job's pod is not running: a waiting reason, or Unschedulable.

    ``reason`` is the kubelet's (``CreateContainerConfigError``, ``ErrImagePull``,
    ``ImagePullBackOff``, ...) or the scheduler's (``Unschedulable``); ``since``
    is when it was first reported, when the pod says so.
    """

    reason: str
    message: str
    since: datetime | None = None


@dataclass(frozen=True)
class ObservedJob:
    """One task attempt's Job as it stands.

    ``report`` is what the task's pod said in its termination message, once
    the Job has finished (None when no pod or no report is left).
    ``message`` is the failure reason when there is no report (the pod's
    termination text, else the Job condition's message); ``permanent`` is set
    when the task exited with EXIT_PERMANENT (Job condition reason
    PodFailurePolicy); ``deadline_exceeded`` when the Job failed with reason
    DeadlineExceeded (activeDeadlineSeconds). ``problem`` is set for an
    active Job whose pod cannot start. ``agent`` is the Agent the attempt runs
    on, as its Job says (None: it does not say).
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
    report: TaskReport | None = None
    problem: PodProblem | None = None
    agent: str | None = None


@dataclass(frozen=True)
class InvalidSpec:
    """A spec the API models refuse (the CRD schema should have stopped it), with why."""

    problems: Sequence[str]


@dataclass(frozen=True)
class UnresolvedSpec:
    """A spec that cannot be resolved yet (its WorkflowTemplate, or an input's ConfigMap or
    Secret key, does not exist): the run waits, Pending, with this reason and message."""

    reason: str
    message: str


@dataclass(frozen=True)
class Refusal:
    """An action the API server refused for good (a 4xx no retry can cure), with its message."""

    action: PrepareRun | CreateTask
    message: str


@dataclass(frozen=True)
class TenantShare:
    """What the run's Tenant lets it start now, as the shell counted it from the cluster.

    ``free_slots`` is how many attempts it may start now under
    ``limits.maxConcurrentTasks`` (its fair share of the free slots; None: no
    such limit).
    ``tokens_elsewhere`` is what the Tenant's other Workflows have used; the
    run's own tokens come from its tasks, so a task that just finished counts
    before the next one starts.
    """

    tenant: str
    free_slots: int | None = None
    max_concurrent_tasks: int | None = None
    token_budget: int | None = None
    tokens_elsewhere: int = 0


@dataclass(frozen=True)
class AgentProfile:
    """What choosing an Agent by ``agentSelector`` reads besides its spec.

    ``labels`` are its metadata's; ``calls`` the call statistics its
    supervisor pod last wrote in its status (None: no pods, or none wrote).
    """

    labels: Mapping[str, str] = field(default_factory=dict)
    calls: AgentCallStats | None = None


@dataclass(frozen=True)
class Observation:
    """Everything one reconcile of one Workflow may look at.

    ``agents`` maps an Agent name in the Workflow's namespace to its spec; a
    missing name is an Agent that does not exist (yet). ``agent_profiles``
    holds the labels and call statistics of those Agents, which
    ``agentSelector`` reads; an Agent missing there has neither. ``recorded_spec`` is
    the spec the PrepareRun action recorded when the run started, None while
    there is none. ``refusals`` are the permanent failures of the actions of
    the previous decision, which the shell hands back once.

    Two are for a shell that bounds or stops runs itself (``troupe run``; the
    operator gives neither): ``free_slots`` is how many more attempts it can
    start now, beneath ``spec.parallelism`` (None: no bound of its own);
    ``stop`` says why it is stopping the run, which then ends Failed with
    reason Interrupted and that message, its running tasks cancelled.

    ``tenancy_refusal`` says why the installation will not start a run in this
    namespace (it belongs to no Tenant); the run waits, Pending, until it is
    gone. The shell decides it, the core only what the status says.

    ``stop_request``, ``suspended`` and ``retry_request`` are what people asked of the run
    (``troupe_operator.api.run_control``: the annotations, read by the shell): stop it
    (the message), hold new attempts back, retry it once it failed (a nonce, answered once).

    ``tenant`` is what the namespace's Tenant allows (None: no Tenant, or one
    without limits): attempts beyond it wait, with reason
    TenantConcurrencyLimit or TokenBudgetExceeded.

    ``agent_slots`` is how many more attempts the run may start now on each Agent with a
    ``model.maxConcurrency`` (its share of the Agent's free slots, counted by the shell
    across the namespace's Workflows); an Agent missing there has no cap. Attempts beyond
    it wait with reason AgentConcurrencyLimit.

    ``cache`` holds the cache entries of the namespace by key hash (``workflow.memo``):
    a memoized unit whose key is there, young enough, succeeds from it without a Job.

    ``spec`` is resolved by the shell (a WorkflowTemplate's tasks, inputs from ConfigMaps);
    ``resolved_from`` says from what, and status records it once the run has started.
    """

    namespace: str
    name: str
    uid: str
    generation: int
    spec: WorkflowSpec | InvalidSpec | UnresolvedSpec
    status: WorkflowStatus
    now: datetime
    jobs: Sequence[ObservedJob] = ()
    agents: Mapping[str, AgentSpec] = field(default_factory=dict)
    agent_profiles: Mapping[str, AgentProfile] = field(default_factory=dict)
    recorded_spec: WorkflowSpec | None = None
    refusals: Sequence[Refusal] = ()
    free_slots: int | None = None
    stop: str | None = None
    tenancy_refusal: str | None = None
    tenant: TenantShare | None = None
    stop_request: str | None = None
    suspended: bool = False
    retry_request: str | None = None
    resolved_from: ResolvedFrom | None = None
    agent_slots: Mapping[str, int] = field(default_factory=dict)
    cache: Mapping[str, CacheEntry] = field(default_factory=dict)
