"""The Tenant kind: a team's namespaces, owners and limits, kept by the operator.

Cluster-scoped, like Capsule's Tenant: it owns namespaces rather than living in
one. Everything it creates (quota, limit range, network policy, role
bindings, the task ServiceAccount) follows from these fields.
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
    """A subject given admin rights in the Tenant's namespaces, as in a RoleBinding."""

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


class TenantSpec(ApiModel):
    """Who owns which namespaces, and within what limits."""

    namespaces: list[DnsLabel] = Field(
        min_length=1, max_length=100, description="Namespaces the Tenant owns; created if missing."
    )
    owners: list[Owner] = Field(
        default_factory=list, max_length=100, description="Subjects bound as admins."
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


class TenantPhase(StrEnum):
    PENDING = "Pending"
    ACTIVE = "Active"
    ERROR = "Error"


class TenantUsage(ApiModel):
    """What the Tenant's workflows are using now."""

    tokens: int = Field(default=0, ge=0, description="LLM tokens used so far.")
    running_tasks: int = Field(default=0, ge=0, description="Task Jobs running now.")


class TenantStatus(ApiModel):
    """What the operator observed of a Tenant."""

    phase: TenantPhase | None = Field(default=None, description="Pending, Active or Error.")
    namespaces: list[str] = Field(default_factory=list, description="Namespaces in place.")
    namespace_count: int = Field(default=0, ge=0, description="How many namespaces are in place.")
    usage: TenantUsage = Field(default_factory=TenantUsage, description="Current usage.")
    observed_generation: int | None = Field(
        default=None, ge=0, description="The metadata.generation last acted on."
    )
    conditions: list[Condition] = Field(default_factory=list, description="Ready.")
