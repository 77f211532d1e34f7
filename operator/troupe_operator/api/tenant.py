"""The Tenant kind: a team's namespaces, owners and limits, kept by the operator.

Cluster-scoped, like Capsule's Tenant: it owns namespaces rather than living in
one. Everything the operator keeps in them (the namespaces' labels, quota,
limit range, network policies, the owners' role binding) follows from these
fields; ``troupe_operator.tenants`` says how.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from troupe_operator.api.common import ApiModel, Cidr, Condition, DnsLabel, Port, Quantity


class OwnerKind(StrEnum):
    USER = "User"
    GROUP = "Group"
    SERVICE_ACCOUNT = "ServiceAccount"


class Owner(ApiModel):
    """A subject given edit rights on Troupe's kinds in the Tenant's namespaces (a RoleBinding)."""

    kind: OwnerKind = Field(description="User, Group or ServiceAccount.")
    name: str = Field(min_length=1, max_length=253, description="Name of the subject.")
    namespace: DnsLabel | None = Field(
        default=None, description="Namespace of a ServiceAccount subject."
    )


class TenantQuota(ApiModel):
    """Hard limits for each of the Tenant's namespaces (a ResourceQuota)."""

    pods: int | None = Field(default=None, ge=0, description="Most pods.")
    cpu: Quantity | None = Field(default=None, description="Most CPU requested, e.g. 4.")
    memory: Quantity | None = Field(default=None, description="Most memory requested, e.g. 8Gi.")
    jobs: int | None = Field(default=None, ge=0, description="Most Jobs.")


class TenantLimits(ApiModel):
    """Limits Troupe itself enforces across all of the Tenant's namespaces."""

    max_concurrent_tasks: int | None = Field(
        default=None, ge=1, description="Most task Jobs running at once."
    )
    token_budget: int | None = Field(
        default=None, ge=1, description="Most LLM tokens all workflows may use in all."
    )


class NetworkIsolation(ApiModel):
    """A default-deny NetworkPolicy that still lets agents reach DNS and their models."""

    enabled: bool = Field(default=True, description="Create the NetworkPolicy.")
    model_egress_cidrs: list[Cidr] = Field(
        default_factory=lambda: ["0.0.0.0/0"],
        alias="modelEgressCIDRs",
        max_length=64,
        description="Where model endpoints may be reached, as CIDRs.",
    )
    model_egress_ports: list[Port] = Field(
        default_factory=lambda: [443],
        max_length=16,
        description="Ports of the model endpoints.",
    )


class PodSecurityLevel(StrEnum):
    PRIVILEGED = "privileged"
    BASELINE = "baseline"
    RESTRICTED = "restricted"


class DeletionPolicy(StrEnum):
    RETAIN = "Retain"
    DELETE = "Delete"


class TenantSpec(ApiModel):
    """Who owns which namespaces, and within what limits."""

    namespaces: list[DnsLabel] = Field(
        min_length=1, max_length=100, description="Namespaces the Tenant owns; created if missing."
    )
    owners: list[Owner] = Field(
        default_factory=list,
        max_length=100,
        description="Subjects bound to ClusterRole troupe-edit in each namespace.",
    )
    quota: TenantQuota = Field(default_factory=TenantQuota, description="Per-namespace quota.")
    limits: TenantLimits = Field(default_factory=TenantLimits, description="Troupe's own limits.")
    network_isolation: NetworkIsolation = Field(
        default_factory=NetworkIsolation, description="Egress policy for the namespaces."
    )
    pod_security: PodSecurityLevel = Field(
        default=PodSecurityLevel.RESTRICTED,
        description="Pod Security Standard enforced on the namespaces.",
    )
    deletion_policy: DeletionPolicy = Field(
        default=DeletionPolicy.RETAIN,
        description=(
            "What deleting the Tenant does to its namespaces: Retain keeps them without"
            " Troupe's label and objects, Delete deletes them."
        ),
    )


class TenantPhase(StrEnum):
    PENDING = "Pending"
    ACTIVE = "Active"
    ERROR = "Error"
    TERMINATING = "Terminating"


class NamespaceState(StrEnum):
    READY = "Ready"
    REFUSED = "Refused"
    TERMINATING = "Terminating"


class TenantNamespace(ApiModel):
    """One namespace of the Tenant's spec, as the operator last found it."""

    name: str = Field(description="The namespace.")
    state: NamespaceState = Field(description="Ready, Refused or Terminating.")
    reason: str = Field(default="", description="Why it is in this state, in one CamelCase word.")
    message: str = Field(default="", description="Why it is in this state, in a sentence.")


class WorkflowCounts(ApiModel):
    """Workflows in the Tenant's namespaces, by phase (one not started yet counts as Pending)."""

    pending: int = Field(default=0, ge=0, description="Workflows Pending.")
    running: int = Field(default=0, ge=0, description="Workflows Running.")
    succeeded: int = Field(default=0, ge=0, description="Workflows Succeeded.")
    failed: int = Field(default=0, ge=0, description="Workflows Failed.")
    error: int = Field(default=0, ge=0, description="Workflows in Error.")


class TenantStatus(ApiModel):
    """What the operator observed of a Tenant and of what runs in its namespaces."""

    phase: TenantPhase | None = Field(
        default=None, description="Pending, Active, Error or Terminating."
    )
    namespaces: list[TenantNamespace] = Field(
        default_factory=list, description="Each namespace of the spec and its state."
    )
    namespaces_ready: str | None = Field(
        default=None, description="Namespaces Ready out of those in the spec, e.g. 2/2."
    )
    running_tasks: int = Field(
        default=0, ge=0, description="Task Jobs not finished in the Tenant's namespaces."
    )
    workflows: WorkflowCounts = Field(
        default_factory=WorkflowCounts, description="Workflows in its namespaces, by phase."
    )
    tokens_used: int = Field(
        default=0, ge=0, description="LLM tokens its namespaces' Workflows have used."
    )
    budget_remaining: int | None = Field(
        default=None, ge=0, description="limits.tokenBudget minus tokensUsed (0 when spent)."
    )
    observed_generation: int | None = Field(
        default=None, ge=0, description="The metadata.generation last acted on."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready, NamespacesReady and, with a token budget, WithinBudget.",
    )
