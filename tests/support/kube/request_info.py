"""What a request asks for, in the terms of kube-apiserver's RequestInfoFactory.

RBAC, fault targeting and request counting all need one answer to "which verb on which
resource": a GET with `watch=true` is `watch`, a GET or DELETE on a collection is `list` or
`deletecollection`, `/api/v1/namespaces/x` is in namespace `x`, and a list or watch with a
`metadata.name=...` field selector names its object (so `resourceNames` can allow it).
Discovery, `/version`, `/openapi/...` and other paths are non-resource requests whose verb
is the lower-case HTTP method.

Not parsed: the deprecated `/api/v1/watch/...` URLs (no client here sends them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import kmock

from tests.support.kube.paths import ApiPath
from tests.support.kube.selectors import FieldSelector

_VERBS = {
    "POST": "create",
    "GET": "get",
    "HEAD": "get",
    "PUT": "update",
    "PATCH": "patch",
    "DELETE": "delete",
}
_COLLECTION_VERBS = {"get": "list", "delete": "deletecollection"}


def is_watch(query: Mapping[str, str]) -> bool:
    return query.get("watch") in {"true", "1"}


def _selected_name(query: Mapping[str, str]) -> str:
    try:
        return FieldSelector.parse(query.get("fieldSelector", "")).name or ""
    except kmock.KubernetesError:  # the API server ignores a bad selector here, and refuses later
        return ""


@dataclass(frozen=True)
class RequestInfo:
    verb: str
    path: str
    is_resource_request: bool = False
    api_group: str = ""
    api_version: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""

    @property
    def full_resource(self) -> str:
        """`pods`, or `pods/status` for a subresource: how RBAC rules and messages name it."""
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource

    @classmethod
    def of(cls, method: str, path: str, query: Mapping[str, str]) -> RequestInfo:
        api_path = ApiPath.parse(path)
        if api_path is None:
            return cls(verb=method.lower(), path=path)
        verb = _VERBS.get(method.upper(), method.lower())
        if api_path.name is None:
            verb = _COLLECTION_VERBS.get(verb, verb)
        if verb in {"get", "list"} and is_watch(query):
            verb = "watch"
        name = api_path.name or ""
        if not name and verb in {"list", "watch"}:
            name = _selected_name(query)
        namespace = api_path.namespace or ""
        if api_path.group == "" and api_path.plural == "namespaces" and api_path.name:
            namespace = api_path.name  # a namespace is "in" itself, for RoleBindings to grant it
        return cls(
            verb=verb,
            path=path,
            is_resource_request=True,
            api_group=api_path.group,
            api_version=api_path.version,
            resource=api_path.plural,
            subresource=api_path.subresource or "",
            namespace=namespace,
            name=name,
        )

    @classmethod
    def of_request(cls, request: kmock.Request) -> RequestInfo:
        return cls.of(request.method.value, request.url.path, request.params)
