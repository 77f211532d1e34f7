"""OpenAPI documents at `/openapi/v3` and `/openapi/v2`, so kubectl validates on the server.

`kubectl apply -f x.yaml` (validation on, the default) first asks whether the server
validates fields itself (k8s.io/cli-runtime/pkg/resource/query_param_verifier_v3.go,
kubectl 1.32): it reads `GET /openapi/v3` (`{"paths": {"api/v1": {"serverRelativeURL":
"/openapi/v3/api/v1?hash=..."}, "apis/<group>/<version>": ...}}`), then the document of the
object's group-version, and looks for a PATCH operation whose `x-kubernetes-group-version-kind`
is the object's kind and which takes a `fieldValidation` parameter. If so, it sends
`fieldValidation=Strict` and leaves validation to the server (`kube.decoding`). Without these
documents kubectl stops: `failed to download openapi`.

What the documents hold, all of it true of the emulator:

- per served group-version, the resource paths with their operations (`list`, `post`,
  `deletecollection`, `get`, `put`, `patch`, `delete`; the `status` and
  `serviceaccounts/token` subresources), each with its `x-kubernetes-action` and
  `x-kubernetes-group-version-kind`, the query parameters the emulator honours
  (`fieldValidation` and `fieldManager` on writes; selectors, `resourceVersion`, `watch`,
  `timeoutSeconds`, `allowWatchBookmarks` on lists), and the PATCH content types it accepts
  (strategic merge for built-in kinds only, never `apply-patch+yaml`);
- schemas for custom resources only: the CRD's `openAPIV3Schema` as
  `<reversed group>.<version>.<Kind>` (e.g. `dev.troupe.v1alpha1.Workflow`) and its
  `...List`, which `kubectl explain` reads. Built-in kinds have no schema here, so kubectl
  computes their apply patches from its compiled-in types, as with a server it cannot read;
- `?hash=` is a SHA-512 of the document, so kubectl's HTTP cache never serves a stale one;
  a request with an outdated hash gets the current document (kube-apiserver redirects).

`/openapi/v2` (protobuf for kubectl, JSON otherwise) is a document with no paths and no
definitions. kubectl reads it only to validate a `kind: List` on the client (the v3 check
answers "unsupported" for `v1/List` by design, and then kubectl validates each item against
v2 definitions, skipping kinds it finds none for): with this document a List is applied,
each item checked by the server with `fieldValidation=Strict`. Against a real server kubectl
would refuse a List item's unknown field itself, before sending (`error validating data:
ValidationError(Workflow.spec): unknown field "bogus"`); here the server refuses it
(`Workflow in version "v1alpha1" cannot be handled as a Workflow: strict decoding error:
unknown field "spec.bogus"`).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from tests.support.kube.patches import JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH
from tests.support.kube.resources import KubeObject, ResourceRegistry, ResourceType

V3_PREFIX = "/openapi/v3"
V2_PATH = "/openapi/v2"
V2_PROTOBUF = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
"""The v2 protobuf media type kube-openapi answers with (kubectl asks for the `@v1.0` one)."""

_OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
_LIST_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"
_PATCH = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch"
_SHARED_SCHEMAS = {
    _OBJECT_META: {"type": "object", "description": "Standard object metadata."},
    _LIST_META: {"type": "object", "description": "Standard list metadata."},
    _PATCH: {"type": "object", "description": "A patch of the media type the request names."},
}
_TOKEN_REQUEST_GVK = {"group": "authentication.k8s.io", "kind": "TokenRequest", "version": "v1"}


def _query(name: str, description: str, kind: str = "string") -> KubeObject:
    return {"name": name, "in": "query", "description": description, "schema": {"type": kind}}


def _in_path(name: str) -> KubeObject:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


_WRITE_PARAMETERS = [
    _query("fieldManager", "The name of the actor making the change (accepted, not recorded)."),
    _query(
        "fieldValidation",
        "How to handle unknown and duplicate fields: Ignore (drop them), Warn (drop them and"
        " answer with a Warning header each; the default) or Strict (refuse the request).",
    ),
]
_LIST_PARAMETERS = [
    _query("labelSelector", "Only objects whose labels match."),
    _query("fieldSelector", "Only objects whose fields match."),
    _query("resourceVersion", "Watch from this version on."),
    _query("watch", "Stream changes instead of listing.", "boolean"),
    _query("timeoutSeconds", "End the watch after this many seconds.", "integer"),
    _query("allowWatchBookmarks", "Send BOOKMARK events.", "boolean"),
]


def _camel(text: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in text.split("."))


def _operation_suffix(rtype: ResourceType, *, namespaced: bool) -> str:
    group = _camel(rtype.group.removesuffix(".k8s.io")) if rtype.group else "Core"
    scope = "Namespaced" if namespaced else ""
    return f"{group}{_camel(rtype.version)}{scope}{rtype.kind}"


def schema_name(rtype: ResourceType, kind: str | None = None) -> str:
    """`dev.troupe.v1alpha1.Workflow`: how kube-apiserver names a CRD kind's schema."""
    reversed_group = ".".join(reversed(rtype.group.split(".")))
    return f"{reversed_group}.{rtype.version}.{kind or rtype.kind}"


def _gvk(rtype: ResourceType, kind: str | None = None) -> dict[str, str]:
    return {"group": rtype.group, "kind": kind or rtype.kind, "version": rtype.version}


def _reference(name: str) -> KubeObject:
    return {"$ref": f"#/components/schemas/{name}"}


def _content(rtype: ResourceType, kind: str | None = None) -> KubeObject:
    if rtype.schema is None:
        return {"application/json": {}}
    return {"application/json": {"schema": _reference(schema_name(rtype, kind))}}


def _operation(
    rtype: ResourceType,
    verb: str,
    action: str,
    *,
    namespaced: bool,
    parameters: Sequence[KubeObject] = (),
    body: KubeObject | None = None,
    gvk: dict[str, str] | None = None,
    kind: str | None = None,
) -> KubeObject:
    operation: KubeObject = {
        "operationId": f"{verb}{_operation_suffix(rtype, namespaced=namespaced)}",
        "parameters": list(parameters),
        "responses": {
            "200": {"description": "OK", "content": _content(rtype, kind)},
            "401": {"description": "Unauthorized"},
        },
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk or _gvk(rtype),
    }
    if body is not None:
        operation["requestBody"] = {"content": body, "required": True}
    return operation


def _patch_types(rtype: ResourceType) -> list[str]:
    return [JSON_PATCH, MERGE_PATCH] + ([] if rtype.custom else [STRATEGIC_MERGE_PATCH])


def _resource_paths(rtype: ResourceType) -> dict[str, KubeObject]:
    root = f"/apis/{rtype.group}/{rtype.version}" if rtype.group else f"/api/{rtype.version}"
    scope = f"{root}/namespaces/{{namespace}}" if rtype.namespaced else root
    scoped = functools.partial(_operation, rtype, namespaced=rtype.namespaced)
    listing: dict[str, Any] = {"parameters": _LIST_PARAMETERS, "kind": f"{rtype.kind}List"}
    writing: dict[str, Any] = {"parameters": _WRITE_PARAMETERS, "body": _content(rtype)}
    patching: dict[str, Any] = {
        "parameters": _WRITE_PARAMETERS,
        "body": {media: {"schema": _reference(_PATCH)} for media in _patch_types(rtype)},
    }
    scope_parameters = [_in_path("namespace")] if rtype.namespaced else []
    item_parameters = [_in_path("name"), *scope_parameters]
    paths = {
        f"{scope}/{rtype.plural}": {
            "get": scoped("list", "list", **listing),
            "post": scoped("create", "post", **writing),
            "delete": scoped("deletecollection", "deletecollection", **listing),
            "parameters": scope_parameters,
        },
        f"{scope}/{rtype.plural}/{{name}}": {
            "get": scoped("read", "get"),
            "put": scoped("replace", "put", **writing),
            "patch": scoped("patch", "patch", **patching),
            "delete": scoped("delete", "delete"),
            "parameters": item_parameters,
        },
    }
    if rtype.namespaced:
        everywhere = _operation(rtype, "list", "list", namespaced=False, **listing)
        paths[f"{root}/{rtype.plural}"] = {"get": everywhere}
    if rtype.has_status:
        paths[f"{scope}/{rtype.plural}/{{name}}/status"] = {
            "get": scoped("read", "get"),
            "put": scoped("replace", "put", **writing),
            "patch": scoped("patch", "patch", **patching),
            "parameters": item_parameters,
        }
    for subresource in rtype.create_subresources:
        paths[f"{scope}/{rtype.plural}/{{name}}/{subresource}"] = {
            "post": scoped("create", "post", **writing, gvk=_TOKEN_REQUEST_GVK),
            "parameters": item_parameters,
        }
    return paths


def _custom_schemas(rtype: ResourceType) -> dict[str, KubeObject]:
    if rtype.schema is None:
        return {}
    schema = copy.deepcopy(rtype.schema.openapi_schema)
    properties = schema.setdefault("properties", {})
    properties.setdefault("apiVersion", {"type": "string", "description": "The API version."})
    properties.setdefault("kind", {"type": "string", "description": "The kind."})
    properties["metadata"] = {"allOf": [_reference(_OBJECT_META)]}
    schema["x-kubernetes-group-version-kind"] = [_gvk(rtype)]
    list_kind = f"{rtype.kind}List"
    listing = {
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"allOf": [_reference(_LIST_META)]},
            "items": {"type": "array", "items": {"$ref": _reference(schema_name(rtype))}},
        },
        "x-kubernetes-group-version-kind": [_gvk(rtype, list_kind)],
    }
    return {schema_name(rtype): schema, schema_name(rtype, list_kind): listing}


def _document(rtypes: Iterable[ResourceType], server_version: str) -> KubeObject:
    paths: dict[str, KubeObject] = {}
    schemas: dict[str, KubeObject] = dict(_SHARED_SCHEMAS)
    for rtype in rtypes:
        paths.update(_resource_paths(rtype))
        schemas.update(_custom_schemas(rtype))
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": server_version},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def _group_version_path(rtype: ResourceType) -> str:
    return f"apis/{rtype.group}/{rtype.version}" if rtype.group else f"api/{rtype.version}"


class OpenApi:
    """The documents of what the registry serves right now (they follow CRD changes)."""

    def __init__(self, registry: ResourceRegistry, server_version: str) -> None:
        self._registry = registry
        self._server_version = server_version

    def _documents(self) -> dict[str, KubeObject]:
        by_group_version: dict[str, list[ResourceType]] = defaultdict(list)
        for rtype in self._registry:
            by_group_version[_group_version_path(rtype)].append(rtype)
        return {
            path: _document(rtypes, self._server_version)
            for path, rtypes in sorted(by_group_version.items())
        }

    def root(self) -> KubeObject:
        """`GET /openapi/v3`: where each group-version's document is."""
        paths = {}
        for path, document in self._documents().items():
            digest = hashlib.sha512(json.dumps(document, sort_keys=True).encode()).hexdigest()
            paths[path] = {"serverRelativeURL": f"{V3_PREFIX}/{path}?hash={digest.upper()}"}
        return {"paths": paths}

    def group_version(self, url_path: str) -> KubeObject | None:
        """`GET /openapi/v3/api/v1` and the like; None for a group-version not served."""
        return self._documents().get(url_path.removeprefix(V3_PREFIX).strip("/"))

    def v2(self) -> KubeObject:
        return {"swagger": "2.0", "info": self._info(), "paths": {}, "definitions": {}}

    def v2_protobuf(self) -> bytes:
        """The v2 document as gnostic's `openapi_v2.Document` protobuf (swagger, info, paths)."""
        info = _field(1, b"Kubernetes") + _field(2, self._server_version.encode())
        return _field(1, b"2.0") + _field(2, info) + _field(8, b"")

    def _info(self) -> KubeObject:
        return {"title": "Kubernetes", "version": self._server_version}


def _varint(number: int) -> bytes:
    encoded = bytearray()
    while True:
        byte, number = number & 0x7F, number >> 7
        encoded.append(byte | (0x80 if number else 0))
        if not number:
            return bytes(encoded)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (strings and nested messages)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload
