"""The Workflow reconcile core: pure rules for running a DAG of agent tasks.

``reconcile(Observation) -> Decision`` is the whole interface; the kopf shell
and ``troupe run`` both call it, and use nothing of this package but what is
exported here. Nothing in this package performs I/O or reads the clock, and
it imports neither the Kubernetes client, kopf nor YAML (an import contract,
checked by a test, holds it to that).
"""

from troupe_operator.workflow.actions import (
    Action,
    CreateTask,
    Decision,
    DeleteJob,
    Event,
    EventType,
    GrantReads,
    PrepareRun,
)
from troupe_operator.workflow.core import reconcile
from troupe_operator.workflow.launch import API_KEY_ENV
from troupe_operator.workflow.memo import CacheEntry
from troupe_operator.workflow.naming import (
    ATTEMPT_AGENT_ANNOTATION,
    LABEL_ATTEMPT,
    LABEL_TASK,
    LABEL_WORKFLOW,
    WorkflowRef,
)
from troupe_operator.workflow.observation import (
    AgentProfile,
    InvalidSpec,
    JobRef,
    JobState,
    Observation,
    ObservedJob,
    PodProblem,
    Refusal,
    TenantShare,
    UnresolvedSpec,
)
from troupe_operator.workflow.revision import spec_hash
from troupe_operator.workflow.selection import matching, possible_agents, ran_on
from troupe_operator.workflow.summary import status_patch
from troupe_operator.workflow.timing import format_duration
from troupe_operator.workflow.units import parent_of

__all__ = [
    "API_KEY_ENV",
    "ATTEMPT_AGENT_ANNOTATION",
    "LABEL_ATTEMPT",
    "LABEL_TASK",
    "LABEL_WORKFLOW",
    "Action",
    "AgentProfile",
    "CacheEntry",
    "CreateTask",
    "Decision",
    "DeleteJob",
    "Event",
    "EventType",
    "GrantReads",
    "InvalidSpec",
    "JobRef",
    "JobState",
    "Observation",
    "ObservedJob",
    "PodProblem",
    "PrepareRun",
    "Refusal",
    "TenantShare",
    "UnresolvedSpec",
    "WorkflowRef",
    "format_duration",
    "matching",
    "parent_of",
    "possible_agents",
    "ran_on",
    "reconcile",
    "spec_hash",
    "status_patch",
]
