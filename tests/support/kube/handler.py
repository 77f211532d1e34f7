"""The HTTP face of the emulator: kmock's `KubernetesScaffold`, with the API as kmock reactions.

What stays kmock's: the aiohttp server plumbing, the discovery documents built from
`kmock.resources` (`/api`, `/api/v1`, `/apis`, `/apis/<group>[/<version>]`), and its DSL:
every part of the API is a reaction, so a test can put its own reactions in front of any of
it (`emulator.handler["get /api/v1/..."] << 503`). kmock's `KubernetesEmulator` store is not
used (see `store.py` for why). `/version` reports kube-apiserver v1.32.0, the release whose
behaviour and words the emulator follows.

The reactions, in the order they are tried:

- override priority: the API server's filters (`kube.access`: 401, 403, 413);
- normal priority: injected faults (`kube.faults`), then anything a test adds;
- fallback priority: the identity APIs (`kube.auth_api`); then every resource URL with
  Kubernetes semantics: watch, create (201), `Table` output for kubectl, and get, list,
  replace (PUT), patch (merge / strategic / JSON patch), delete, deletecollection, and the
  `status` subresource; the OpenAPI documents (`kube.openapi`); then kmock's discovery and
  its 404 for anything else.

Bodies of create, replace and patch are decoded as kube-apiserver decodes them, with
`fieldValidation` (`kube.decoding`); the `Warning` headers a request earns are written on
its response (`kube.warnings`). Reading and dispatch are kmock's, minus its URL parser and
history scans (`kube.dispatch`). A `KubernetesError` from any reaction is the API's answer,
rendered as kube-apiserver renders its `Status` (empty `reason` and `details` left out, a
`Retry-After` header when it carries `retryAfterSeconds`), not a harness failure: kmock's
`errors` keep only real ones. kmock's request log, kept for DSL assertions, holds the last
`request_log_limit` requests (the older ones are dropped, so slices such as `[:3]` count
from there).

Pods' `log` subresource comes from `kube.pod_logs` (`pod_logs.source` says where each Pod's
output is; the Job runner's fixture sets it).

Not emulated: `limit`/`continue` paging (everything comes in one page), `dryRun`, server-side
apply, `scale`/`exec`/`eviction` subresources, protobuf request bodies (415), watch in
`Table` form (`kubectl get -w`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp.web
import attrs
import kmock
from kmock._internal.rendering import (  # how kmock reports a broken stream or a mismatch
    ReactionMismatchError,
    StreamingError,
)
from typing_extensions import override

from tests.support.kube import auth_api, openapi, warnings
from tests.support.kube.access import AccessControl
from tests.support.kube.bodies import BodyError, parse
from tests.support.kube.decoding import Decoder
from tests.support.kube.dispatch import Predicate, PriorityOrder, header, read_request, sees
from tests.support.kube.errors import (
    bad_request,
    method_not_allowed,
    server_error,
    status_body,
    unsupported_media_type,
)
from tests.support.kube.faults import FaultInjector, WatchPlan
from tests.support.kube.patches import apply_patch, media_type
from tests.support.kube.paths import ApiPath
from tests.support.kube.pod_logs import PodLogs, is_pod_log
from tests.support.kube.rbac import Authorizer
from tests.support.kube.request_info import is_watch
from tests.support.kube.resources import BUILTIN_TYPES, KubeObject, ResourceRegistry, ResourceType
from tests.support.kube.selectors import FieldSelector, LabelSelector, ObjectFilter
from tests.support.kube.store import ObjectStore
from tests.support.kube.tables import render_table
from tests.support.kube.tokens import TokenIssuer
from tests.support.kube.watches import Watcher, WatchHub

_TABLE_HEADERS = {"Content-Type": "application/json;as=Table;v=v1;g=meta.k8s.io"}
_METADATA_HEADERS = {"Content-Type": "application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io"}
_JSON_HEADERS = {"Content-Type": "application/json"}
_TEXT_HEADERS = {"Content-Type": "text/plain"}
_PROTOBUF_V2_HEADERS = {"Content-Type": openapi.V2_PROTOBUF}
SERVER_VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0",
    **dict.fromkeys(("gitCommit", "gitTreeState", "buildDate", "goVersion", "compiler"), ""),
    "platform": "linux/amd64",
}
"""What `/version` reports: the release whose behaviour and words the emulator follows (the
build fields are empty: the emulator was built from no commit)."""
_DEFAULT_WATCH_SECONDS = 3600.0
_SUBRESOURCE_VERBS = {"status": ["get", "patch", "update"], "token": ["create"]}


def _resource_not_found() -> kmock.KubernetesError:
    return kmock.KubernetesError(
        status=404,
        reason="NotFound",
        message="the server could not find the requested resource",
        details={},
    )


def _api_path(request: kmock.Request) -> ApiPath | None:
    return ApiPath.parse(request.url.path)


def _refuse_binary(request: kmock.Request) -> None:
    content_type = header(request, "Content-Type")
    if "protobuf" in content_type or "cbor" in content_type:
        raise unsupported_media_type(content_type)


def _json_body(request: kmock.Request) -> Any:
    """The body of a request that is not a stored object's (TokenRequest, reviews)."""
    _refuse_binary(request)
    try:
        return parse(request.body).value
    except BodyError as exc:
        raise bad_request(f"the request body is not valid JSON: {exc}") from exc


def _event(kind: str, obj: KubeObject) -> KubeObject:
    return {"type": kind, "object": obj}


def _error_event(error: kmock.KubernetesError) -> KubeObject:
    status = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "code": error.status,
        "reason": error.reason,
        "message": error.message,
    }
    return _event("ERROR", status)


@Predicate
def _is_openapi_v3(request: kmock.Request) -> bool:
    path = request.url.path.rstrip("/")
    return request.method == kmock.method.GET and (
        path == openapi.V3_PREFIX or path.startswith(f"{openapi.V3_PREFIX}/")
    )


@Predicate
def _is_openapi_v2(request: kmock.Request) -> bool:
    return request.method == kmock.method.GET and request.url.path.rstrip("/") == openapi.V2_PATH


@Predicate
def _is_openapi_v2_protobuf(request: kmock.Request) -> bool:
    return _is_openapi_v2(request) and "protobuf" in header(request, "Accept")


@Predicate
def _is_resource(request: kmock.Request) -> bool:
    return _api_path(request) is not None


@Predicate
def _is_watch(request: kmock.Request) -> bool:
    return request.method == kmock.method.GET and is_watch(request.params) and _is_resource(request)


@Predicate
def _is_create(request: kmock.Request) -> bool:
    path = _api_path(request)
    return request.method == kmock.method.POST and path is not None and path.name is None


@Predicate
def _wants_table(request: kmock.Request) -> bool:
    return (
        request.method == kmock.method.GET
        and "as=Table" in header(request, "Accept")
        and _is_resource(request)
    )


@Predicate
def _wants_metadata(request: kmock.Request) -> bool:
    """A GET of one object asking for its metadata only, as metadata informers do."""
    path = _api_path(request)
    return (
        request.method == kmock.method.GET
        and "as=PartialObjectMetadata" in header(request, "Accept")
        and path is not None
        and path.name is not None
        and _is_resource(request)
    )


@Predicate
def _is_token_request(request: kmock.Request) -> bool:
    path = _api_path(request)
    return (
        request.method == kmock.method.POST
        and path is not None
        and (path.group, path.plural, path.subresource) == ("", "serviceaccounts", "token")
        and path.namespace is not None
    )


def _is_review(group: str, plural: str) -> Predicate:
    def is_review(request: kmock.Request) -> bool:
        path = _api_path(request)
        return (
            request.method == kmock.method.POST
            and path is not None
            and (path.group, path.plural, path.name, path.namespace) == (group, plural, None, None)
        )

    return Predicate(is_review)


_IS_TOKEN_REVIEW = _is_review("authentication.k8s.io", "tokenreviews")
_IS_ACCESS_REVIEW = _is_review("authorization.k8s.io", "subjectaccessreviews")
_IS_SELF_ACCESS_REVIEW = _is_review("authorization.k8s.io", "selfsubjectaccessreviews")


def _object_filter(query: Mapping[str, str], path: ApiPath) -> ObjectFilter:
    fields = query.get("fieldSelector", "")
    if path.name is not None:
        fields = ",".join(filter(None, [fields, f"metadata.name={path.name}"]))
    return ObjectFilter(
        namespace=path.namespace,
        labels=LabelSelector.parse(query.get("labelSelector", "")),
        fields=FieldSelector.parse(fields),
    )


@attrs.define(kw_only=True)
class KubeEmulator(kmock.KubernetesScaffold):
    """An in-memory Kubernetes API server (the handler; see `tests.support.emulator` to run it)."""

    bookmark_interval: float = 1.0
    history_limit: int = 20_000
    request_log_limit: int = 5_000
    fault_seed: int = 0
    registry: ResourceRegistry = attrs.field(init=False)
    store: ObjectStore = attrs.field(init=False)
    watches: WatchHub = attrs.field(init=False)
    tokens: TokenIssuer = attrs.field(init=False)
    authorizer: Authorizer = attrs.field(init=False)
    access: AccessControl = attrs.field(init=False)
    auth_api: auth_api.AuthApi = attrs.field(init=False)
    faults: FaultInjector = attrs.field(init=False)
    openapi: openapi.OpenApi = attrs.field(init=False)
    pod_logs: PodLogs = attrs.field(init=False)
    _order: PriorityOrder = attrs.field(init=False, factory=PriorityOrder)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.registry = ResourceRegistry(self.resources)
        self.watches = WatchHub(history_limit=self.history_limit)
        self.store = ObjectStore(self.registry, self.watches)
        for rtype in BUILTIN_TYPES:
            self.registry.add(rtype)
        self.tokens = TokenIssuer(self.store.is_alive)
        self.authorizer = Authorizer(self.store, self.registry)
        self.access = AccessControl(self.tokens, self.authorizer)
        self.auth_api = auth_api.AuthApi(self.store, self.registry, self.tokens, self.authorizer)
        self.faults = FaultInjector(self.fault_seed)
        self.openapi = openapi.OpenApi(self.registry, SERVER_VERSION["gitVersion"])
        self.pod_logs = PodLogs(self._pod)
        auth_api.register_discovery(self.resources)
        self.override << self.access.check
        self[Predicate(self.faults.targets)] << self.faults.intercept
        api = self.fallback**1  # still a fallback, but tried before kmock's discovery
        api[_is_token_request] << 201 << self._serve_token_request
        api[_IS_TOKEN_REVIEW] << 201 << self._serve_token_review
        api[_IS_ACCESS_REVIEW] << 201 << self._serve_access_review
        api[_IS_SELF_ACCESS_REVIEW] << 201 << self._serve_self_access_review
        api[Predicate(is_pod_log)] << _TEXT_HEADERS << self.pod_logs.serve
        api[_is_watch] << _JSON_HEADERS << self._serve_watch
        api[_is_create] << 201 << self._serve_create
        api[_wants_table] << _TABLE_HEADERS << self._serve_table
        api[_wants_metadata] << _METADATA_HEADERS << self._serve_metadata
        api[_is_resource] << self._serve_resource
        api[_is_openapi_v3] << _JSON_HEADERS << self._serve_openapi_v3
        api[_is_openapi_v2_protobuf] << _PROTOBUF_V2_HEADERS << self.openapi.v2_protobuf
        api[_is_openapi_v2] << _JSON_HEADERS << self.openapi.v2
        self.fallback["get /version/"] << self._serve_server_version  # the python client's URL

    # Dispatch.

    @override
    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        """kmock's entry point, reading the URL the Kubernetes way (see `kube.dispatch`).

        A failure that is not an API answer is a harness bug: kept in kmock's `errors` and
        answered with a 500 `Status` (or an `ERROR` event when a stream had started).
        """
        request = await read_request(raw_request, id=len(self._requests))
        self._requests.append(request)
        with warnings.recording() as recorded:
            response = await self._respond(request)
        recorded.write(response)
        return response

    async def _respond(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        try:
            return await self._handle(request)
        except StreamingError as broken:
            failure = broken.__cause__ if isinstance(broken.__cause__, Exception) else broken
            self.errors.append(failure)
            stream: aiohttp.web.StreamResponse = broken.args[0]
            if not stream.prepared:
                return await self._render_error(failure)
            await self._stream_error(failure, stream)
            await stream.write_eof()
            return stream
        except Exception as failure:
            self.errors.append(failure)
            return await self._render_error(failure)

    @override
    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        self._forget_old_requests()
        for reaction in self._order(self._payloads):
            if reaction._disabled.is_set() or not sees(reaction._source, request):
                continue
            try:
                return await reaction(request)
            except ReactionMismatchError:
                reaction._disabled.set()
            except NotImplementedError:
                continue
            except kmock.KubernetesError as answer:
                return await self._render_error(answer)
        raise NotImplementedError(f"no reaction serves {request.method.value} {request.url}")

    @override
    async def _render_error(self, exc: Exception) -> aiohttp.web.StreamResponse:
        """An API answer as kube-apiserver's `Status`; anything else as kmock renders it."""
        if not isinstance(exc, kmock.KubernetesError):
            return await super()._render_error(exc)
        response = aiohttp.web.json_response(status_body(exc), status=exc.status)
        details = exc.details
        if isinstance(details, dict) and "retryAfterSeconds" in details:
            response.headers["Retry-After"] = str(details["retryAfterSeconds"])
        return response

    def _forget_old_requests(self) -> None:
        if len(self._requests) <= 2 * self.request_log_limit:
            return
        del self._requests[: -self.request_log_limit]
        for reaction in self._payloads:
            del reaction._requests[: -self.request_log_limit]

    @override
    async def _serve_server_version(self, request: kmock.Request) -> kmock.Payload:
        return dict(SERVER_VERSION)

    def _serve_openapi_v3(self, request: kmock.Request) -> KubeObject:
        if request.url.path.rstrip("/") == openapi.V3_PREFIX:
            return self.openapi.root()
        document = self.openapi.group_version(request.url.path)
        if document is None:
            raise _resource_not_found()
        return document

    @override
    async def _serve_version(self, request: kmock.Request) -> kmock.Payload:
        """kmock's APIResourceList, with core's groupVersion `v1` (not `/v1`) and subresources
        listed as a real server does: no shortNames or categories (kubectl would match them)."""
        document = await super()._serve_version(request)
        assert isinstance(document, dict)  # kmock builds the APIResourceList as a dict
        document["groupVersion"] = document["groupVersion"].lstrip("/")
        for entry in document["resources"]:
            if "/" in entry["name"]:
                subresource = entry["name"].partition("/")[2]
                entry.update(
                    shortNames=[],
                    categories=[],
                    singularName="",
                    verbs=_SUBRESOURCE_VERBS.get(subresource, ["get"]),
                )
        return document

    # Resources.

    def _pod(self, namespace: str, name: str) -> KubeObject:
        rtype = self.registry.find("", "v1", "pods")
        assert rtype is not None  # a built-in type
        return self.store.get(rtype, namespace, name)

    def _resolved(self, request: kmock.Request) -> tuple[ResourceType, ApiPath, bool]:
        """The type and path of a resource URL, and whether it is the `status` subresource."""
        path = _api_path(request)
        assert path is not None  # the reactions' criteria let only resource URLs through
        rtype = self.registry.find(path.group, path.version, path.plural)
        if rtype is None or (path.namespace is not None and not rtype.namespaced):
            raise _resource_not_found()
        status_only = path.subresource == "status" and rtype.has_status
        if path.subresource is not None and not status_only:
            raise _resource_not_found()
        return rtype, path, status_only

    def _serve_create(self, request: kmock.Request) -> KubeObject:
        rtype, path, status_only = self._resolved(request)
        if status_only:
            raise method_not_allowed("POST is not supported on the status subresource")
        _refuse_binary(request)
        decoder = Decoder.of(rtype, request.params, "CreateOptions")
        return self.store.create(rtype, path.namespace, decoder.object(request.body))

    def _serve_resource(self, request: kmock.Request) -> KubeObject:
        rtype, path, status_only = self._resolved(request)
        method = request.method.value
        if path.name is None:
            if method == "GET":
                return self._list(
                    rtype, self.store.select(rtype, _object_filter(request.params, path))
                )
            if method == "DELETE":
                deleted = self.store.delete_collection(rtype, _object_filter(request.params, path))
                return {
                    "kind": f"{rtype.kind}List",
                    "apiVersion": rtype.api_version,
                    "items": deleted,
                }
            raise method_not_allowed(f"{method} is not supported on a collection")
        if method == "GET":
            return self.store.get(rtype, path.namespace, path.name)
        if method == "PUT":
            _refuse_binary(request)
            decoder = Decoder.of(rtype, request.params, "UpdateOptions")
            desired = decoder.object(request.body)
            return self.store.update(
                rtype, path.namespace, path.name, desired, status_only=status_only
            )
        if method == "PATCH":
            return self._patch(request, rtype, path, status_only=status_only)
        if method == "DELETE":
            return self.store.delete(rtype, path.namespace, path.name)
        raise method_not_allowed(f"{method} is not supported")

    def _patch(
        self, request: kmock.Request, rtype: ResourceType, path: ApiPath, *, status_only: bool
    ) -> KubeObject:
        assert path.name is not None  # only objects are patched
        decoder = Decoder.of(rtype, request.params, "PatchOptions")
        current = self.store.get(rtype, path.namespace, path.name)
        content_type = header(request, "Content-Type")
        patch = decoder.patch(request.body, media_type(content_type))
        desired = apply_patch(rtype, content_type, current, patch.value)
        decoder.patched(desired, patch, media_type(content_type))
        return self.store.update(rtype, path.namespace, path.name, desired, status_only=status_only)

    def _serve_table(self, request: kmock.Request) -> KubeObject:
        rtype, path, _ = self._resolved(request)
        if path.name is None:
            objects = self.store.select(rtype, _object_filter(request.params, path))
        else:
            objects = [self.store.get(rtype, path.namespace, path.name)]
        include_object = request.params.get("includeObject", "Metadata")
        return render_table(rtype, objects, include_object, str(self.store.revision))

    def _serve_metadata(self, request: kmock.Request) -> KubeObject:
        rtype, path, _ = self._resolved(request)
        assert path.name is not None  # _wants_metadata holds only for one object
        found = self.store.get(rtype, path.namespace, path.name)
        return {
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": found["metadata"],
        }

    def _list(self, rtype: ResourceType, objects: list[KubeObject]) -> KubeObject:
        return {
            "kind": f"{rtype.kind}List",
            "apiVersion": rtype.api_version,
            "metadata": {"resourceVersion": str(self.store.revision)},
            "items": objects,
        }

    # Identity.

    def _serve_token_request(self, request: kmock.Request) -> KubeObject:
        path = _api_path(request)
        assert path is not None and path.namespace is not None and path.name is not None
        return self.auth_api.token_request(path.namespace, path.name, _json_body(request))

    def _serve_token_review(self, request: kmock.Request) -> KubeObject:
        return self.auth_api.token_review(_json_body(request))

    def _serve_access_review(self, request: kmock.Request) -> KubeObject:
        return self.auth_api.subject_access_review(_json_body(request))

    def _serve_self_access_review(self, request: kmock.Request) -> KubeObject:
        caller = self.access.identify(request)
        return self.auth_api.self_subject_access_review(_json_body(request), caller)

    # Watches.

    def _serve_watch(self, request: kmock.Request) -> AsyncIterator[KubeObject | bytes]:
        """Resolve the URL now (a 404 is a plain answer), then stream the watch."""
        rtype, path, _ = self._resolved(request)
        return self._watch_stream(request, rtype, _object_filter(request.params, path))

    async def _watch_stream(
        self, request: kmock.Request, rtype: ResourceType, object_filter: ObjectFilter
    ) -> AsyncIterator[KubeObject | bytes]:
        yield b""  # the headers go out now: clients wait for them before anything happens
        since_text = request.params.get("resourceVersion", "")
        since = int(since_text) if since_text not in {"", "0"} else None
        try:
            watcher = self.watches.subscribe(rtype.key, object_filter, since)
        except kmock.KubernetesError as too_old:
            yield _error_event(too_old)
            return
        plan = self.faults.watch_plan(request)
        try:
            if since is None:
                for obj in self.store.select(rtype, object_filter):
                    yield _event("ADDED", obj)
            if plan.error_first:
                yield _error_event(server_error(500))
                return
            async for event in self._changes(request.params, rtype, watcher, plan):
                yield event
        finally:
            self.watches.unsubscribe(rtype.key, watcher)

    async def _changes(
        self, query: Mapping[str, str], rtype: ResourceType, watcher: Watcher, plan: WatchPlan
    ) -> AsyncIterator[KubeObject]:
        """Events until the client's `timeoutSeconds` (or a fault's cut), with bookmarks."""
        duration = float(query.get("timeoutSeconds") or _DEFAULT_WATCH_SECONDS)
        cut = plan.cut_after is not None and plan.cut_after < duration
        deadline = time.monotonic() + min(duration, plan.cut_after or duration)
        bookmarks = query.get("allowWatchBookmarks") == "true"
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                event = await asyncio.wait_for(
                    watcher.queue.get(), timeout=min(remaining, self.bookmark_interval)
                )
            except TimeoutError:
                if bookmarks:
                    bookmark = {
                        "kind": rtype.kind,
                        "apiVersion": rtype.api_version,
                        "metadata": {"resourceVersion": str(self.store.revision)},
                    }
                    yield _event("BOOKMARK", bookmark)
                continue
            if event is None:
                return
            if not plan.drops(event):
                yield event
        if cut:
            plan.record_cut()
