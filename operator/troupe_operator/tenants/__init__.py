"""The Tenant core: pure rules turning a Tenant into its namespaces, their policies and status.

``reconcile(Observation) -> Decision`` is the whole interface; the kopf shell
(``troupe_operator.controller.tenants``) observes, calls it and executes the
writes. Nothing here performs I/O or reads the clock, and nothing here
imports the Kubernetes client, kopf or the shell. ``slots.share`` is the
rule by which the shell shares a Tenant's task slots among its Workflows;
the Workflow core holds back what the Tenant's limits do not allow.
"""

from troupe_operator.tenants.children import (
    EDIT_ROLE,
    FINALIZER,
    LABEL_TENANT,
    TENANT_ANNOTATION,
    Child,
    TenantRef,
    TenantSettings,
    claimed_by,
)
from troupe_operator.tenants.core import (
    Decision,
    Observation,
    ObservedNamespace,
    Target,
    Write,
    reconcile,
)

__all__ = [
    "EDIT_ROLE",
    "FINALIZER",
    "LABEL_TENANT",
    "TENANT_ANNOTATION",
    "Child",
    "Decision",
    "Observation",
    "ObservedNamespace",
    "Target",
    "TenantRef",
    "TenantSettings",
    "Write",
    "claimed_by",
    "reconcile",
]
