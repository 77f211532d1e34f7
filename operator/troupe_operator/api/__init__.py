"""The Troupe API (group ``troupe.dev``, version ``v1alpha1``) as typed models.

This package is the one place the shapes of Agent, Workflow and Tenant are
defined. The CRDs are generated from it, the validator and the operator parse
with it, and the agent runtime reads its Agent spec through it; nothing else
redefines these shapes.
"""

from troupe_operator.api.agent import (
    ROLE_DEFAULTS,
    AgentPhase,
    AgentSpec,
    AgentStatus,
    ModelSpec,
    ResourceRequirements,
    Role,
    RoleDefaults,
    SecretKeyRef,
)
from troupe_operator.api.common import (
    API_VERSION,
    GROUP,
    VERSION,
    ApiModel,
    Condition,
    ConditionStatus,
    TokenUsage,
)
from troupe_operator.api.task_io import (
    EXIT_PERMANENT,
    EXIT_RETRYABLE,
    INPUT_KEY,
    MAX_OUTPUT_BYTES,
    OUTPUT_KEY,
    RESULT_KEY,
    SCRIPTED_MODEL_NAME,
    OutputTarget,
    TaskInput,
    TaskResult,
)
from troupe_operator.api.tenant import (
    NetworkIsolation,
    Owner,
    OwnerKind,
    PodSecurityLevel,
    TenantLimits,
    TenantPhase,
    TenantQuota,
    TenantSpec,
    TenantStatus,
    TenantUsage,
)
from troupe_operator.api.workflow import (
    OutputRef,
    TaskPhase,
    TaskSpec,
    TaskStatus,
    WorkflowPhase,
    WorkflowSpec,
    WorkflowStatus,
)

__all__ = [
    "API_VERSION",
    "EXIT_PERMANENT",
    "EXIT_RETRYABLE",
    "GROUP",
    "INPUT_KEY",
    "MAX_OUTPUT_BYTES",
    "OUTPUT_KEY",
    "RESULT_KEY",
    "ROLE_DEFAULTS",
    "SCRIPTED_MODEL_NAME",
    "VERSION",
    "AgentPhase",
    "AgentSpec",
    "AgentStatus",
    "ApiModel",
    "Condition",
    "ConditionStatus",
    "ModelSpec",
    "NetworkIsolation",
    "OutputRef",
    "OutputTarget",
    "Owner",
    "OwnerKind",
    "PodSecurityLevel",
    "ResourceRequirements",
    "Role",
    "RoleDefaults",
    "SecretKeyRef",
    "TaskInput",
    "TaskPhase",
    "TaskResult",
    "TaskSpec",
    "TaskStatus",
    "TenantLimits",
    "TenantPhase",
    "TenantQuota",
    "TenantSpec",
    "TenantStatus",
    "TenantUsage",
    "TokenUsage",
    "WorkflowPhase",
    "WorkflowSpec",
    "WorkflowStatus",
]
