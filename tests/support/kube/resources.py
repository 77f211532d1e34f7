"""Resource types the emulator serves: built-in kinds an operator uses, plus CRD-defined kinds.

kmock only learns a resource from the objects or reactions it has seen, so kopf and kubectl
cannot discover `v1/namespaces`, `batch/v1/jobs` and friends before something creates one.
This module declares them up front, with the group/version/scope/verbs/shortNames that a
real API server reports, and keeps the registry of every type (built-in or CRD) by URL.
RBAC kinds include `clusterroles` and `clusterrolebindings`; `serviceaccounts/token` is
listed as a subresource. The review APIs (TokenReview, SubjectAccessReview) are not stored
objects and are not here: `kube.auth_api` serves and lists them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import kmock

from tests.support.kube.fields import FieldError

KubeObject = dict[str, Any]

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


class ObjectSchema(Protocol):
    """A CRD version's schema: what the decoder, the store and the OpenAPI documents need."""

    @property
    def openapi_schema(self) -> KubeObject: ...

    def prune(self, obj: KubeObject) -> KubeObject: ...

    def unknown_fields(self, obj: KubeObject) -> list[str]: ...

    def violations(self, obj: KubeObject, *, status_only: bool = False) -> list[FieldError]: ...


@dataclass(frozen=True, eq=False)
class ResourceType:
    """One served `group/version/plural` and everything the API semantics depend on."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    has_status: bool = False
    create_subresources: tuple[str, ...] = ()
    """Subresources served to POST only, such as `serviceaccounts/token`."""
    custom: bool = False
    printer_columns: tuple[KubeObject, ...] = ()
    schema: ObjectSchema | None = field(default=None, repr=False)

    @property
    def key(self) -> tuple[str, str]:
        """Version-independent identity: objects are shared by all versions of a type."""
        return (self.group, self.plural)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def qualified_plural(self) -> str:
        """The name Kubernetes uses in messages: `configmaps`, `workflows.troupe.dev`."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


def _builtin(
    group_version: str,
    plural: str,
    kind: str,
    *,
    namespaced: bool = True,
    short_names: tuple[str, ...] = (),
    has_status: bool = False,
    create_subresources: tuple[str, ...] = (),
) -> ResourceType:
    group, _, version = group_version.rpartition("/")
    return ResourceType(
        group=group,
        version=version,
        plural=plural,
        kind=kind,
        namespaced=namespaced,
        short_names=short_names,
        categories=("all",) if plural in {"pods", "services", "deployments", "jobs"} else (),
        has_status=has_status,
        create_subresources=create_subresources,
    )


BUILTIN_TYPES: tuple[ResourceType, ...] = (
    _builtin(
        "v1", "namespaces", "Namespace", namespaced=False, short_names=("ns",), has_status=True
    ),
    _builtin("v1", "configmaps", "ConfigMap", short_names=("cm",)),
    _builtin("v1", "secrets", "Secret"),
    _builtin(
        "v1",
        "serviceaccounts",
        "ServiceAccount",
        short_names=("sa",),
        create_subresources=("token",),
    ),
    _builtin("v1", "events", "Event", short_names=("ev",)),
    _builtin("v1", "pods", "Pod", short_names=("po",), has_status=True),
    _builtin("v1", "services", "Service", short_names=("svc",), has_status=True),
    _builtin("v1", "resourcequotas", "ResourceQuota", short_names=("quota",), has_status=True),
    _builtin("v1", "limitranges", "LimitRange", short_names=("limits",)),
    _builtin("events.k8s.io/v1", "events", "Event", short_names=("ev",)),
    _builtin("batch/v1", "jobs", "Job", has_status=True),
    _builtin("apps/v1", "deployments", "Deployment", short_names=("deploy",), has_status=True),
    _builtin(
        "policy/v1",
        "poddisruptionbudgets",
        "PodDisruptionBudget",
        short_names=("pdb",),
        has_status=True,
    ),
    _builtin("coordination.k8s.io/v1", "leases", "Lease"),
    _builtin("networking.k8s.io/v1", "networkpolicies", "NetworkPolicy", short_names=("netpol",)),
    _builtin("rbac.authorization.k8s.io/v1", "roles", "Role"),
    _builtin("rbac.authorization.k8s.io/v1", "rolebindings", "RoleBinding"),
    _builtin("rbac.authorization.k8s.io/v1", "clusterroles", "ClusterRole", namespaced=False),
    _builtin(
        "rbac.authorization.k8s.io/v1",
        "clusterrolebindings",
        "ClusterRoleBinding",
        namespaced=False,
    ),
    _builtin(
        "apiextensions.k8s.io/v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        namespaced=False,
        short_names=("crd", "crds"),
        has_status=True,
    ),
)


class ResourceRegistry:
    """All served resource types, addressable by URL parts or by version-free key.

    Every change is mirrored into kmock's `resources` array, from which kmock serves the
    discovery documents (`/api/v1`, `/apis`, `/apis/<group>/<version>`).
    """

    def __init__(self, discovery: kmock.ResourcesArray) -> None:
        self._by_url: dict[tuple[str, str, str], ResourceType] = {}
        self._discovery = discovery

    def __iter__(self) -> Iterator[ResourceType]:
        return iter(list(self._by_url.values()))

    def add(self, rtype: ResourceType) -> None:
        self._by_url[(rtype.group, rtype.version, rtype.plural)] = rtype
        self._discovery[kmock.resource(rtype.group, rtype.version, rtype.plural)] = (
            kmock.ResourceInfo(
                kind=rtype.kind,
                singular=rtype.singular,
                namespaced=rtype.namespaced,
                verbs=ALL_VERBS,
                shortnames=rtype.short_names,
                categories=rtype.categories,
                subresources={
                    *rtype.create_subresources,
                    *(["status"] if rtype.has_status else []),
                },
            )
        )

    def remove(self, rtype: ResourceType) -> None:
        self._by_url.pop((rtype.group, rtype.version, rtype.plural), None)
        self._discovery.pop(kmock.resource(rtype.group, rtype.version, rtype.plural), None)

    def find(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._by_url.get((group, version, plural))

    def versions_of(self, key: tuple[str, str]) -> list[ResourceType]:
        return [rtype for rtype in self._by_url.values() if rtype.key == key]
