"""The HTTP face of the emulator: kmock's `KubernetesScaffold` plus a resource API router.

What stays kmock's: the aiohttp server plumbing, the discovery documents built from
`kmock.resources` (`/api`, `/api/v1`, `/apis`, `/apis/<group>[/<version>]`), `/version`,
the `Status` error bodies, and the reactions a test may add with kmock's DSL for any
non-resource URL. kmock's `KubernetesEmulator` store is not used (see `store.py` for why).

What is added: every resource URL is served here with Kubernetes semantics — list, watch,
get, create (POST), replace (PUT), patch (merge / strategic / JSON patch), delete,
deletecollection, and the `status` subresource — plus `Table` output for kubectl.

Not emulated: `limit`/`continue` paging (everything comes in one page), `dryRun`, server-side
apply, `scale`/`log`/`exec`/`eviction` subresources, authentication and RBAC, protobuf,
`/openapi/v2` and `/openapi/v3` (404), watch in `Table` form (`kubectl get -w`).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp.web
import attrs
import kmock
from typing_extensions import override

from tests.support.kube.errors import bad_request, method_not_allowed, unsupported_media_type
from tests.support.kube.patches import apply_patch
from tests.support.kube.paths import ApiPath
from tests.support.kube.resources import BUILTIN_TYPES, KubeObject, ResourceRegistry, ResourceType
from tests.support.kube.selectors import FieldSelector, LabelSelector, ObjectFilter
from tests.support.kube.store import ObjectStore
from tests.support.kube.tables import render_table
from tests.support.kube.watches import Watcher, WatchHub

_TABLE_CONTENT_TYPE = "application/json;as=Table;v=v1;g=meta.k8s.io"
_DEFAULT_WATCH_SECONDS = 3600.0


def _resource_not_found() -> kmock.KubernetesError:
    return kmock.KubernetesError(
        status=404,
        reason="NotFound",
        message="the server could not find the requested resource",
        details={},
    )


async def _json_body(request: aiohttp.web.BaseRequest) -> Any:
    if "protobuf" in request.content_type or "cbor" in request.content_type:
        raise unsupported_media_type(request.content_type)
    try:
        return json.loads(await request.read())
    except ValueError as exc:
        raise bad_request(f"the request body is not valid JSON: {exc}") from exc


def _respond(payload: KubeObject, status: int = 200) -> aiohttp.web.Response:
    return aiohttp.web.json_response(payload, status=status)


@attrs.define(kw_only=True)
class KubeEmulator(kmock.KubernetesScaffold):
    """An in-memory Kubernetes API server (the handler; see `tests.support.emulator` to run it)."""

    bookmark_interval: float = 1.0
    history_limit: int = 20_000
    registry: ResourceRegistry = attrs.field(init=False)
    store: ObjectStore = attrs.field(init=False)
    watches: WatchHub = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.registry = ResourceRegistry(self.resources)
        self.watches = WatchHub(history_limit=self.history_limit)
        self.store = ObjectStore(self.registry, self.watches)
        for rtype in BUILTIN_TYPES:
            self.registry.add(rtype)

    @override
    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        path = ApiPath.parse(raw_request.path)
        if path is None:
            return await super().__call__(raw_request)
        try:
            return await self._serve_resource(raw_request, path)
        except Exception as exc:  # kmock renders any failure as a `Status` body (500 if unknown)
            return await self._render_error(exc)

    @override
    async def _serve_version(self, request: kmock.Request) -> kmock.Payload:
        """kmock's APIResourceList, with core's groupVersion `v1` (not `/v1`) and subresources
        listed as a real server does: no shortNames or categories (kubectl would match them)."""
        document = await super()._serve_version(request)
        assert isinstance(document, dict)  # kmock builds the APIResourceList as a dict
        document["groupVersion"] = document["groupVersion"].lstrip("/")
        for entry in document["resources"]:
            if "/" in entry["name"]:
                entry.update(
                    shortNames=[], categories=[], singularName="", verbs=["get", "patch", "update"]
                )
        return document

    async def _serve_resource(
        self, request: aiohttp.web.BaseRequest, path: ApiPath
    ) -> aiohttp.web.StreamResponse:
        rtype = self.registry.find(path.group, path.version, path.plural)
        if rtype is None or (path.namespace is not None and not rtype.namespaced):
            raise _resource_not_found()
        status_only = path.subresource == "status" and rtype.has_status
        if path.subresource is not None and not status_only:
            raise _resource_not_found()
        query = request.query
        method = request.method.upper()
        if method == "GET" and query.get("watch") in {"true", "1"}:
            return await self._watch(request, rtype, path)
        if method == "GET" and path.name is None:
            objects = self.store.select(rtype, self._filter(request, path))
            return self._render_list(request, rtype, objects)
        if method == "POST" and path.name is None:
            return _respond(
                self.store.create(rtype, path.namespace, await _json_body(request)), 201
            )
        if method == "DELETE" and path.name is None:
            deleted = self.store.delete_collection(rtype, self._filter(request, path))
            return _respond(
                {"kind": f"{rtype.kind}List", "apiVersion": rtype.api_version, "items": deleted}
            )
        if path.name is None:
            raise method_not_allowed(f"{method} is not supported on a collection")
        if method == "GET":
            obj = self.store.get(rtype, path.namespace, path.name)
            return (
                self._render_list(request, rtype, [obj])
                if self._wants_table(request)
                else _respond(obj)
            )
        if method == "PUT":
            desired = await _json_body(request)
            return _respond(
                self.store.update(
                    rtype, path.namespace, path.name, desired, status_only=status_only
                )
            )
        if method == "PATCH":
            current = self.store.get(rtype, path.namespace, path.name)
            desired = apply_patch(rtype, request.content_type, current, await _json_body(request))
            return _respond(
                self.store.update(
                    rtype, path.namespace, path.name, desired, status_only=status_only
                )
            )
        if method == "DELETE":
            return _respond(self.store.delete(rtype, path.namespace, path.name))
        raise method_not_allowed(f"{method} is not supported")

    @staticmethod
    def _filter(request: aiohttp.web.BaseRequest, path: ApiPath) -> ObjectFilter:
        fields = request.query.get("fieldSelector", "")
        if path.name is not None:
            fields = ",".join(filter(None, [fields, f"metadata.name={path.name}"]))
        return ObjectFilter(
            namespace=path.namespace,
            labels=LabelSelector.parse(request.query.get("labelSelector", "")),
            fields=FieldSelector.parse(fields),
        )

    @staticmethod
    def _wants_table(request: aiohttp.web.BaseRequest) -> bool:
        return "as=Table" in request.headers.get("Accept", "")

    def _render_list(
        self, request: aiohttp.web.BaseRequest, rtype: ResourceType, objects: list[KubeObject]
    ) -> aiohttp.web.Response:
        revision = str(self.store.revision)
        if self._wants_table(request):
            include_object = request.query.get("includeObject", "Metadata")
            table = render_table(rtype, objects, include_object, revision)
            return aiohttp.web.Response(
                text=json.dumps(table), headers={"Content-Type": _TABLE_CONTENT_TYPE}
            )
        return _respond(
            {
                "kind": f"{rtype.kind}List",
                "apiVersion": rtype.api_version,
                "metadata": {"resourceVersion": revision},
                "items": objects,
            }
        )

    async def _watch(
        self, request: aiohttp.web.BaseRequest, rtype: ResourceType, path: ApiPath
    ) -> aiohttp.web.StreamResponse:
        object_filter = self._filter(request, path)
        since_text = request.query.get("resourceVersion", "")
        since = int(since_text) if since_text not in {"", "0"} else None
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        try:
            watcher = self.watches.subscribe(rtype.key, object_filter, since)
        except kmock.KubernetesError as exc:
            await response.prepare(request)
            error = {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "code": exc.status,
                "reason": exc.reason,
                "message": exc.message,
            }
            await response.write(json.dumps({"type": "ERROR", "object": error}).encode() + b"\n")
            return response
        initial = [] if since is not None else self.store.select(rtype, object_filter)
        try:
            await response.prepare(request)
            for obj in initial:
                await response.write(json.dumps({"type": "ADDED", "object": obj}).encode() + b"\n")
            await self._stream_changes(request, response, rtype, watcher)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.watches.unsubscribe(rtype.key, watcher)
        return response

    async def _stream_changes(
        self,
        request: aiohttp.web.BaseRequest,
        response: aiohttp.web.StreamResponse,
        rtype: ResourceType,
        watcher: Watcher,
    ) -> None:
        timeout_seconds = float(request.query.get("timeoutSeconds") or _DEFAULT_WATCH_SECONDS)
        bookmarks = request.query.get("allowWatchBookmarks") == "true"
        deadline = time.monotonic() + timeout_seconds
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                event = await asyncio.wait_for(
                    watcher.queue.get(), timeout=min(remaining, self.bookmark_interval)
                )
            except TimeoutError:
                if request.transport is None or request.transport.is_closing():
                    return  # the client went away: forget the watcher now, not at its timeout
                if bookmarks:
                    bookmark = {
                        "kind": rtype.kind,
                        "apiVersion": rtype.api_version,
                        "metadata": {"resourceVersion": str(self.store.revision)},
                    }
                    await response.write(
                        json.dumps({"type": "BOOKMARK", "object": bookmark}).encode() + b"\n"
                    )
                continue
            if event is None:
                return
            await response.write(json.dumps(event).encode() + b"\n")
