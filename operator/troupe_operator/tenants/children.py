"""What a Tenant keeps in each of its namespaces, built as plain dicts.

A namespace of a Tenant is labelled ``troupe.dev/tenant=<tenant>`` (the
claim: whoever labels it first owns it), annotated with the Tenant's full
name (a label value holds at most 63 characters: longer names are shortened
with a hash), and labelled for Pod Security Admission at the spec's level
(``restricted`` by default), enforced, warned and audited against the latest
version of the standard. It holds, each named below, labelled
``app.kubernetes.io/managed-by=troupe`` and ``troupe.dev/tenant``, and owned
by the Tenant (a cluster-scoped owner of namespaced dependents, which the
garbage collector honours):

- ResourceQuota ``troupe-tenant``: ``spec.quota`` per namespace (``pods``,
  ``requests.cpu``, ``requests.memory``, ``count/jobs.batch``); none when the
  spec sets no quota.
- LimitRange ``troupe-tenant``: container defaults, so that a pod without
  requests is admitted under a quota on requests: requests ``cpu: 100m``,
  ``memory: 128Mi``; limit ``memory: 512Mi`` (no CPU limit: throttling a
  model client helps nobody). A container that requests more than 512Mi of
  memory must set its own limit.
- NetworkPolicy ``troupe-default-deny``: every pod, no ingress, no egress
  but DNS (``kube-dns`` in ``kube-system``, port 53 over UDP and TCP).
- NetworkPolicy ``troupe-egress``: Troupe's pods (task and agent pods alike
  carry ``app.kubernetes.io/managed-by=troupe``; task pods have no
  ``app.kubernetes.io/name``) may reach the model endpoints the spec lists
  (``networkIsolation.modelEgressCIDRs`` and ``modelEgressPorts``, TCP), the
  Kubernetes API (the installation's CIDR and ports: a policy sees the API
  server's own address, not the ``kubernetes`` Service's), and agent pods
  of the namespace on the serve port (a team calls its members).
- NetworkPolicy ``troupe-agent-ingress``: agent pods accept the serve port
  from any pod of the namespace. A policy of its own, because its pod
  selector is not ``troupe-egress``'s.
- RoleBinding ``troupe-owners``: ``spec.owners`` bound to the ClusterRole
  ``troupe-edit`` (installed with the operator, aggregated into the standard
  ``admin`` and ``edit`` roles); none without owners.

No NetworkPolicy at all when ``networkIsolation.enabled`` is false.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from functools import cached_property
from typing import Any, Final

from troupe_operator.agents.children import APP_NAME as AGENT_APP_NAME
from troupe_operator.agents.children import LABEL_NAME, SERVE_PORT
from troupe_operator.api import API_VERSION, OwnerKind, TenantQuota, TenantSpec
from troupe_operator.workflow.naming import HASH_CHARS, LABEL_MANAGED_BY, MANAGED_BY, short_digest

Body = dict[str, Any]

LABEL_TENANT: Final = "troupe.dev/tenant"
TENANT_ANNOTATION: Final = "troupe.dev/tenant"
"""The Tenant's full name, on its namespaces and children (a label value may be shortened)."""
FINALIZER: Final = "troupe.dev/tenant-cleanup"
POD_SECURITY: Final = "pod-security.kubernetes.io"
POD_SECURITY_MODES: Final = ("enforce", "warn", "audit")
EDIT_ROLE: Final = "troupe-edit"
"""The ClusterRole owners are bound to; defined once, in ``deploy/operator.yaml``."""
RBAC_API: Final = "rbac.authorization.k8s.io/v1"
RBAC_GROUP: Final = "rbac.authorization.k8s.io"
NETWORKING_API: Final = "networking.k8s.io/v1"
MAX_LABEL: Final = 63

DEFAULT_REQUESTS: Final = {"cpu": "100m", "memory": "128Mi"}
DEFAULT_LIMITS: Final = {"memory": "512Mi"}
DNS_PORT: Final = 53


class Child(Enum):
    """The objects a Tenant keeps in each of its namespaces, in the order they are written."""

    RESOURCE_QUOTA = ("v1", "resourcequotas", "ResourceQuota", "troupe-tenant")
    LIMIT_RANGE = ("v1", "limitranges", "LimitRange", "troupe-tenant")
    DEFAULT_DENY = (NETWORKING_API, "networkpolicies", "NetworkPolicy", "troupe-default-deny")
    EGRESS = (NETWORKING_API, "networkpolicies", "NetworkPolicy", "troupe-egress")
    AGENT_INGRESS = (NETWORKING_API, "networkpolicies", "NetworkPolicy", "troupe-agent-ingress")
    OWNERS = (RBAC_API, "rolebindings", "RoleBinding", "troupe-owners")

    def __init__(self, api_version: str, plural: str, kind: str, child_name: str) -> None:
        self.api_version = api_version
        self.plural = plural
        self.kind = kind
        self.child_name = child_name


@dataclass(frozen=True)
class TenantSettings:
    """What the installation decides: where task and agent pods reach the Kubernetes API."""

    api_server_cidr: str = "0.0.0.0/0"
    api_server_ports: tuple[int, ...] = (443, 6443)


@dataclass(frozen=True)
class TenantRef:
    """One Tenant object: the labels and owner reference of everything it keeps derive from it."""

    name: str
    uid: str

    @cached_property
    def label(self) -> str:
        """The Tenant's name as a label value: itself if it fits 63 characters, else shortened."""
        if len(self.name) <= MAX_LABEL:
            return self.name
        return f"{self.name[: MAX_LABEL - HASH_CHARS - 1].rstrip('-.')}-{short_digest(self.name)}"

    def labels(self) -> dict[str, str]:
        return {LABEL_TENANT: self.label, LABEL_MANAGED_BY: MANAGED_BY}

    def owner_reference(self) -> Body:
        return {
            "apiVersion": API_VERSION,
            "kind": "Tenant",
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


def claimed_by(namespace: Mapping[str, Any]) -> str | None:
    """Who a namespace is labelled for: the Tenant's full name where known, else the label."""
    metadata = namespace.get("metadata") or {}
    label = (metadata.get("labels") or {}).get(LABEL_TENANT)
    if not label:
        return None
    annotated = (metadata.get("annotations") or {}).get(TENANT_ANNOTATION)
    return str(annotated or label)


def namespace_metadata(tenant: TenantRef, spec: TenantSpec) -> Body:
    """The labels and annotation a namespace of the Tenant carries (merged into the rest)."""
    level = spec.pod_security.value
    labels = {LABEL_TENANT: tenant.label}
    for mode in POD_SECURITY_MODES:
        labels[f"{POD_SECURITY}/{mode}"] = level
        labels[f"{POD_SECURITY}/{mode}-version"] = "latest"
    return {"labels": labels, "annotations": {TENANT_ANNOTATION: tenant.name}}


def namespace(tenant: TenantRef, spec: TenantSpec, name: str) -> Body:
    metadata = {"name": name, **namespace_metadata(tenant, spec)}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata}


def _object(tenant: TenantRef, child: Child, namespace: str, **fields: Any) -> Body:
    return {
        "apiVersion": child.api_version,
        "kind": child.kind,
        "metadata": {
            "name": child.child_name,
            "namespace": namespace,
            "labels": tenant.labels(),
            "annotations": {TENANT_ANNOTATION: tenant.name},
            "ownerReferences": [tenant.owner_reference()],
        },
        **fields,
    }


def quota_hard(quota: TenantQuota) -> dict[str, str]:
    """``spec.hard`` of the ResourceQuota; empty when the spec sets no quota."""
    hard = {
        "pods": quota.pods,
        "requests.cpu": quota.cpu,
        "requests.memory": quota.memory,
        "count/jobs.batch": quota.jobs,
    }
    return {key: str(value) for key, value in hard.items() if value is not None}


def resource_quota(tenant: TenantRef, spec: TenantSpec, namespace: str) -> Body:
    return _object(tenant, Child.RESOURCE_QUOTA, namespace, spec={"hard": quota_hard(spec.quota)})


def limit_range(tenant: TenantRef, namespace: str) -> Body:
    return _object(
        tenant,
        Child.LIMIT_RANGE,
        namespace,
        spec={
            "limits": [
                {
                    "type": "Container",
                    "defaultRequest": dict(DEFAULT_REQUESTS),
                    "default": dict(DEFAULT_LIMITS),
                }
            ]
        },
    )


def _ports(ports: Sequence[int], *protocols: str) -> list[Body]:
    return [{"protocol": protocol, "port": port} for port in ports for protocol in protocols]


def default_deny(tenant: TenantRef, namespace: str) -> Body:
    dns = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
    }
    return _object(
        tenant,
        Child.DEFAULT_DENY,
        namespace,
        spec={
            "podSelector": {},
            "policyTypes": ["Ingress", "Egress"],
            "egress": [{"to": [dns], "ports": _ports([DNS_PORT], "UDP", "TCP")}],
        },
    )


def egress(tenant: TenantRef, spec: TenantSpec, settings: TenantSettings, namespace: str) -> Body:
    isolation = spec.network_isolation
    models = [{"ipBlock": {"cidr": cidr}} for cidr in isolation.model_egress_cidrs]
    rules = []
    if models and isolation.model_egress_ports:
        rules.append({"to": models, "ports": _ports(isolation.model_egress_ports, "TCP")})
    rules += [
        {
            "to": [{"ipBlock": {"cidr": settings.api_server_cidr}}],
            "ports": _ports(settings.api_server_ports, "TCP"),
        },
        {
            "to": [{"podSelector": {"matchLabels": {LABEL_NAME: AGENT_APP_NAME}}}],
            "ports": _ports([SERVE_PORT], "TCP"),
        },
    ]
    return _object(
        tenant,
        Child.EGRESS,
        namespace,
        spec={
            "podSelector": {"matchLabels": {LABEL_MANAGED_BY: MANAGED_BY}},
            "policyTypes": ["Egress"],
            "egress": rules,
        },
    )


def agent_ingress(tenant: TenantRef, namespace: str) -> Body:
    return _object(
        tenant,
        Child.AGENT_INGRESS,
        namespace,
        spec={
            "podSelector": {"matchLabels": {LABEL_NAME: AGENT_APP_NAME}},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {}}], "ports": _ports([SERVE_PORT], "TCP")}],
        },
    )


def _subject(kind: OwnerKind, name: str, namespace: str | None) -> Body:
    if kind is OwnerKind.SERVICE_ACCOUNT:
        # Without a namespace, the ServiceAccount of that name in each of the namespaces.
        return {"kind": kind.value, "name": name, **({"namespace": namespace} if namespace else {})}
    return {"kind": kind.value, "apiGroup": RBAC_GROUP, "name": name}


def owners(tenant: TenantRef, spec: TenantSpec, namespace: str) -> Body:
    return _object(
        tenant,
        Child.OWNERS,
        namespace,
        roleRef={"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": EDIT_ROLE},
        subjects=[_subject(owner.kind, owner.name, owner.namespace) for owner in spec.owners],
    )


def desired(
    tenant: TenantRef, spec: TenantSpec, settings: TenantSettings, namespace: str
) -> dict[Child, Body]:
    """Every child the Tenant wants in ``namespace``, in the order they are written."""
    wanted: dict[Child, Body] = {}
    if quota_hard(spec.quota):
        wanted[Child.RESOURCE_QUOTA] = resource_quota(tenant, spec, namespace)
    wanted[Child.LIMIT_RANGE] = limit_range(tenant, namespace)
    if spec.network_isolation.enabled:
        wanted[Child.DEFAULT_DENY] = default_deny(tenant, namespace)
        wanted[Child.EGRESS] = egress(tenant, spec, settings, namespace)
        wanted[Child.AGENT_INGRESS] = agent_ingress(tenant, namespace)
    if spec.owners:
        wanted[Child.OWNERS] = owners(tenant, spec, namespace)
    return wanted
