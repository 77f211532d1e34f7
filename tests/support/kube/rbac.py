"""Role-based access control, decided the way kube-apiserver's RBAC authorizer decides.

This is how the project tests least privilege, so it says no wherever a real cluster does.
For an authenticated identity (a ServiceAccount token), a request is allowed when a rule
of a role bound to it covers the request:

- ClusterRoleBindings, then the RoleBindings of the request's namespace; subjects of kind
  ServiceAccount (namespace defaulting to the binding's), User and Group; a `roleRef` to a
  Role (of the binding's namespace) or a ClusterRole; a missing role is reported in the
  reason (`RBAC: role.rbac.authorization.k8s.io "x" not found`) and grants nothing;
- rules: `apiGroups`, `resources` (`pods`, `pods/status`, `*`, `*/status`), `verbs`
  (`*`), `resourceNames` (a request without a name, such as create, list, watch or
  deletecollection, never matches a rule that names resources; a list or watch with a
  `metadata.name` field selector carries that name), `nonResourceURLs` (exact or `prefix*`);
- ClusterRole `aggregationRule`: the rules of every ClusterRole its selectors match,
  computed at each check (the aggregation controller's result, without its delay);
- the bootstrap policy every cluster has, without storing its ClusterRoles: authenticated
  users may `get` discovery, `/version`, `/openapi`, `/healthz`, `/livez`, `/readyz`
  (system:discovery, system:public-info-viewer) and create SelfSubjectAccessReviews
  (system:basic-user).

The allow reason names the grant as kube-apiserver does (`RBAC: allowed by RoleBinding
"name/ns" of Role "role" to ServiceAccount "sa/ns"`). Not emulated: the Node authorizer,
webhook authorizers, and the escalation checks on writing roles and bindings.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import kmock

from tests.support.kube.request_info import RequestInfo
from tests.support.kube.resources import KubeObject, ResourceRegistry
from tests.support.kube.selectors import LabelSelector, ObjectFilter
from tests.support.kube.store import ObjectStore
from tests.support.kube.tokens import UserInfo

GROUP = "rbac.authorization.k8s.io"
_AUTHENTICATED = "system:authenticated"
_BOOTSTRAP_PATHS = (
    "/api",
    "/api/*",
    "/apis",
    "/apis/*",
    "/version",
    "/version/",
    "/openapi",
    "/openapi/*",
    "/healthz",
    "/livez",
    "/readyz",
)
_BOOTSTRAP_RULES: tuple[KubeObject, ...] = (
    {"nonResourceURLs": list(_BOOTSTRAP_PATHS), "verbs": ["get"]},
    {
        "apiGroups": ["authorization.k8s.io"],
        "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
        "verbs": ["create"],
    },
)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""


def _covers(values: list[str], wanted: str) -> bool:
    return "*" in values or wanted in values


def _resource_matches(rule_resources: list[str], info: RequestInfo) -> bool:
    for resource in rule_resources:
        if resource in {"*", info.full_resource}:
            return True
        if info.subresource and resource == f"*/{info.subresource}":
            return True
    return False


def _path_matches(patterns: list[str], path: str) -> bool:
    return any(
        pattern == "*"
        or pattern == path
        or (pattern.endswith("*") and path.startswith(pattern[:-1]))
        for pattern in patterns
    )


def rule_allows(rule: KubeObject, info: RequestInfo) -> bool:
    if not _covers(rule.get("verbs") or [], info.verb):
        return False
    if not info.is_resource_request:
        return _path_matches(rule.get("nonResourceURLs") or [], info.path)
    names = rule.get("resourceNames") or []
    return (
        _covers(rule.get("apiGroups") or [], info.api_group)
        and _resource_matches(rule.get("resources") or [], info)
        and (not names or info.name in names)
    )


def _describe_subject(subject: KubeObject, binding_namespace: str) -> str:
    if subject.get("kind") == "ServiceAccount":
        namespace = subject.get("namespace") or binding_namespace
        return f'ServiceAccount "{subject["name"]}/{namespace}"'
    return f'{subject.get("kind")} "{subject.get("name")}"'


def _subject_is(subject: KubeObject, user: UserInfo, binding_namespace: str) -> bool:
    kind, name = subject.get("kind"), subject.get("name")
    if kind == "ServiceAccount":
        namespace = subject.get("namespace") or binding_namespace
        return user.username == f"system:serviceaccount:{namespace}:{name}"
    if kind == "User":
        return user.username == name
    if kind == "Group":
        return name in user.groups
    return False


@dataclass(frozen=True)
class _Grant:
    """One binding's role, as far as it applies to the user: where its rules come from."""

    source: str
    rules: tuple[KubeObject, ...]


class Authorizer:
    def __init__(self, store: ObjectStore, registry: ResourceRegistry) -> None:
        self._store = store
        self._registry = registry

    def authorize(self, user: UserInfo, info: RequestInfo) -> Decision:
        if _AUTHENTICATED in user.groups and any(
            rule_allows(rule, info) for rule in _BOOTSTRAP_RULES
        ):
            return Decision(True, "RBAC: allowed by the bootstrap policy for authenticated users")
        errors: list[str] = []
        for grant in self._grants(user, info.namespace, errors):
            if any(rule_allows(rule, info) for rule in grant.rules):
                return Decision(True, f"RBAC: allowed by {grant.source}")
        if not errors:
            return Decision(False)
        return Decision(
            False, "RBAC: " + (errors[0] if len(errors) == 1 else f"[{', '.join(errors)}]")
        )

    def _grants(self, user: UserInfo, namespace: str, errors: list[str]) -> Iterator[_Grant]:
        for binding in self._objects("clusterrolebindings", None):
            yield from self._grant(binding, user, "", errors)
        if namespace:
            for binding in self._objects("rolebindings", namespace):
                yield from self._grant(binding, user, namespace, errors)

    def _grant(
        self, binding: KubeObject, user: UserInfo, namespace: str, errors: list[str]
    ) -> Iterator[_Grant]:
        subject = next(
            (s for s in binding.get("subjects") or [] if _subject_is(s, user, namespace)), None
        )
        if subject is None:
            return
        role_ref = binding.get("roleRef") or {}
        kind, role_name = role_ref.get("kind", ""), role_ref.get("name", "")
        try:
            rules = self._rules_of(kind, role_name, namespace)
        except kmock.KubernetesError:  # the authorizer's lister names the kind in the singular
            errors.append(f'{kind.lower()}.{GROUP} "{role_name}" not found')
            return
        name = binding["metadata"]["name"]
        binding_name = f"{name}/{namespace}" if namespace else name
        binding_kind = "RoleBinding" if namespace else "ClusterRoleBinding"
        yield _Grant(
            f'{binding_kind} "{binding_name}" of {kind} "{role_name}"'
            f" to {_describe_subject(subject, namespace)}",
            rules,
        )

    def _rules_of(self, kind: str, name: str, namespace: str) -> tuple[KubeObject, ...]:
        if kind == "Role":
            return tuple(self._object("roles", namespace, name).get("rules") or ())
        role = self._object("clusterroles", None, name)
        aggregation = role.get("aggregationRule")
        if aggregation is None:
            return tuple(role.get("rules") or ())
        selectors = [
            LabelSelector.from_object(selector)
            for selector in aggregation.get("clusterRoleSelectors") or []
        ]
        return tuple(
            rule
            for other in self._objects("clusterroles", None)
            if other.get("aggregationRule") is None
            and any(selector.matches(other) for selector in selectors)
            for rule in other.get("rules") or ()
        )

    def _objects(self, plural: str, namespace: str | None) -> list[KubeObject]:
        rtype = self._registry.find(GROUP, "v1", plural)
        assert rtype is not None  # RBAC kinds are built in
        return self._store.select(rtype, ObjectFilter(namespace=namespace))

    def _object(self, plural: str, namespace: str | None, name: str) -> KubeObject:
        rtype = self._registry.find(GROUP, "v1", plural)
        assert rtype is not None
        return self._store.get(rtype, namespace, name)
