"""The operator's Kubernetes API calls, async, bounded in time, with errors that say what to do.

Built on the asyncio flavour of the official client (``kubernetes.aio``),
through the public ``request`` method of its dynamic client: objects stay
plain dicts (the shapes the core and the task pods share), where the typed
API classes would convert every body into their models and back, which cost
more CPU than the rest of a task's work together. Every call runs under a
deadline (``timeout_seconds``), on top of the client's own. Failures become
:class:`ApiError`, which says whether to retry (timeouts, connection errors,
429, 5xx, 409 Conflict on an update) or not (any other 4xx: the server will
say the same again). Creating what exists answers None, deleting what is
gone is success; nothing else is swallowed here. Every failed call is counted
in ``troupe_api_errors_total`` by Kubernetes verb, resource and status code.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final, cast

import aiohttp
from kubernetes.aio import client
from kubernetes.aio.client.exceptions import ApiException
from kubernetes.aio.dynamic import DynamicClient

from troupe_operator.api import API_VERSION
from troupe_operator.controller import metrics

Body = dict[str, Any]
Connect = Callable[[], Awaitable[client.ApiClient]]
"""Builds the API client a controller uses, when the operator starts."""
MERGE_PATCH: Final = "application/merge-patch+json"
METADATA_ONLY: Final = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
FROM_CACHE: Final = "0"
"""resourceVersion of a LIST the API server may answer from its watch cache, not etcd."""
TRANSIENT_STATUSES: Final = frozenset({408, 429}) | frozenset(range(500, 600))
NO_STATUS: Final = 0
"""Status of a failure without an HTTP answer: a timeout or a connection error."""


class ApiError(Exception):
    """A failed API call: the HTTP status (0 without an answer), reason and message."""

    def __init__(
        self, status: int, reason: str, message: str, retry_after: float | None = None
    ) -> None:
        super().__init__(f"{status or 'no answer'} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.retry_after = retry_after

    @property
    def transient(self) -> bool:
        """Whether the same call may succeed later."""
        return (
            self.status == NO_STATUS
            or self.status in TRANSIENT_STATUSES
            or (self.status == 409 and self.reason == "Conflict")
        )


def _retry_after(headers: Any) -> float | None:
    try:
        return max(0.0, float((headers or {}).get("Retry-After", "")))
    except (ValueError, TypeError, AttributeError):
        return None


def _api_error(error: ApiException) -> ApiError:
    """The Status body the server sent, as an ApiError."""
    try:
        status = json.loads(error.body or "{}")
    except (ValueError, TypeError):
        status = {}
    status = status if isinstance(status, dict) else {}
    return ApiError(
        int(error.status or NO_STATUS),
        str(status.get("reason") or error.reason or ""),
        str(status.get("message") or ""),
        _retry_after(error.headers),
    )


VERBS: Final = {"get": "get", "post": "create", "put": "update", "patch": "patch"}


def call_labels(method: str, resource: str) -> tuple[str, str]:
    """The Kubernetes verb and resource (``jobs``, ``workflows/status``) of a call on a path.

    Bounded: a path's names and namespaces never reach a label. A GET of a
    collection is ``list``, a DELETE of a collection ``deletecollection``.
    """
    parts = resource.split("?", 1)[0].strip("/").split("/")
    rest = parts[2:] if parts[:1] == ["api"] else parts[3:]
    if len(rest) >= 3 and rest[0] == "namespaces" and rest[2:] not in (["status"], ["finalize"]):
        rest = rest[2:]  # a namespaced resource
    kind = rest[0] if rest else "unknown"
    named = len(rest) >= 2
    if len(rest) >= 3:
        kind = f"{kind}/{rest[2]}"
    method = method.lower()
    if method == "delete":
        return ("delete" if named else "deletecollection"), kind
    if method == "get" and not named:
        return "list", kind
    return VERBS.get(method, method), kind


def _code(error: ApiError) -> str:
    if error.status != NO_STATUS:
        return str(error.status)
    return "timeout" if error.reason == "Timeout" else "connection"


def path(group_version: str, plural: str, namespace: str, name: str = "") -> str:
    """The REST path of a namespaced collection or object."""
    root = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
    return f"{root}/namespaces/{namespace}/{plural}" + (f"/{name}" if name else "")


@dataclass(frozen=True)
class Kube:
    """The calls the Workflow controller makes, each bounded by ``timeout_seconds``."""

    api: client.ApiClient
    timeout_seconds: float
    _dynamic: DynamicClient = field(init=False)

    def __post_init__(self) -> None:
        dynamic = DynamicClient(self.api)  # type: ignore[no-untyped-call]  # untyped upstream
        object.__setattr__(self, "_dynamic", dynamic)

    async def _call(
        self, method: str, resource: str, body: Body | None = None, **query: Any
    ) -> Body:
        try:
            return await self._answer(method, resource, body, **query)
        except ApiError as error:
            verb, kind = call_labels(method, resource)
            metrics.API_ERRORS.labels(verb, kind, _code(error)).inc()
            raise

    async def _answer(
        self, method: str, resource: str, body: Body | None = None, **query: Any
    ) -> Body:
        try:
            async with asyncio.timeout(self.timeout_seconds):
                response = await self._dynamic.request(
                    method,
                    resource,
                    body=body,
                    serialize=False,
                    _request_timeout=self.timeout_seconds,
                    **query,
                )
                data = await response.read()
        except ApiException as error:
            raise _api_error(error) from None
        except TimeoutError:
            raise ApiError(
                NO_STATUS, "Timeout", f"no answer within {self.timeout_seconds}s"
            ) from None
        except (aiohttp.ClientError, OSError) as error:
            raise ApiError(
                NO_STATUS, "ConnectionError", str(error) or type(error).__name__
            ) from None
        return cast(Body, json.loads(data or b"{}"))

    async def _create(self, resource: str, body: Body) -> Body | None:
        try:
            return await self._call("post", resource, body)
        except ApiError as error:
            if error.status == 409 and error.reason == "AlreadyExists":
                return None
            raise

    async def _read(self, resource: str, **query: Any) -> Body | None:
        try:
            return await self._call("get", resource, **query)
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    async def _list(self, resource: str, label_selector: str) -> list[Body]:
        listing = await self._call(
            "get", resource, label_selector=label_selector, resource_version=FROM_CACHE
        )
        return list(listing.get("items") or [])

    # -- workflows -------------------------------------------------------------

    async def patch_workflow_status(self, namespace: str, name: str, status: Body) -> Body:
        resource = path(API_VERSION, "workflows", namespace, name) + "/status"
        return await self._call("patch", resource, {"status": status}, content_type=MERGE_PATCH)

    # -- jobs and their pods ---------------------------------------------------

    async def create_job(self, namespace: str, body: Body) -> Body | None:
        """The created Job; None when one of that name exists."""
        return await self._create(path("batch/v1", "jobs", namespace), body)

    async def read_job(self, namespace: str, name: str) -> Body | None:
        return await self._read(path("batch/v1", "jobs", namespace, name))

    async def list_jobs(self, namespace: str, label_selector: str) -> list[Body]:
        """Jobs by label, from the API server's watch cache: never a scan of etcd."""
        return await self._list(path("batch/v1", "jobs", namespace), label_selector)

    async def delete_job(self, namespace: str, name: str) -> None:
        """Delete a Job and (in the background) its pods; a Job already gone is fine."""
        try:
            await self._call(
                "delete",
                path("batch/v1", "jobs", namespace, name),
                propagation_policy="Background",
            )
        except ApiError as error:
            if error.status != 404:
                raise

    async def list_pods(self, namespace: str, label_selector: str) -> list[Body]:
        """Pods by label, from the API server's watch cache: never a scan of etcd."""
        return await self._list(path("v1", "pods", namespace), label_selector)

    # -- what a run is prepared with -------------------------------------------

    async def create_config_map(self, namespace: str, body: Body) -> Body | None:
        return await self._create(path("v1", "configmaps", namespace), body)

    async def read_config_map(self, namespace: str, name: str) -> Body | None:
        return await self._read(path("v1", "configmaps", namespace, name))

    async def read_config_map_metadata(self, namespace: str, name: str) -> Body | None:
        """A ConfigMap's metadata only (labels, annotations), never its data."""
        return await self._read(
            path("v1", "configmaps", namespace, name), header_params={"Accept": METADATA_ONLY}
        )

    async def delete_config_map(self, namespace: str, name: str) -> None:
        """Delete a ConfigMap (a collected cache entry); one already gone is fine."""
        try:
            await self._call("delete", path("v1", "configmaps", namespace, name))
        except ApiError as error:
            if error.status != 404:
                raise

    async def read_role(self, namespace: str, name: str) -> Body | None:
        return await self._read(path("rbac.authorization.k8s.io/v1", "roles", namespace, name))

    async def replace_role(self, namespace: str, body: Body) -> Body:
        """Replace a Role, guarded by the resourceVersion it carries (409 when stale)."""
        name = body["metadata"]["name"]
        resource = path("rbac.authorization.k8s.io/v1", "roles", namespace, name)
        return await self._call("put", resource, body)

    async def secret_keys(self, namespace: str, name: str) -> frozenset[str] | None:
        """The keys of a Secret (None: no such Secret); its values are dropped unread."""
        secret = await self._read(path("v1", "secrets", namespace, name))
        return None if secret is None else frozenset(secret.get("data") or {})

    async def create_service_account(self, namespace: str, body: Body) -> Body | None:
        return await self._create(path("v1", "serviceaccounts", namespace), body)

    async def create_role(self, namespace: str, body: Body) -> Body | None:
        return await self._create(path("rbac.authorization.k8s.io/v1", "roles", namespace), body)

    async def create_role_binding(self, namespace: str, body: Body) -> Body | None:
        return await self._create(
            path("rbac.authorization.k8s.io/v1", "rolebindings", namespace), body
        )

    # -- events ----------------------------------------------------------------

    async def create_event(self, namespace: str, body: Body) -> Body | None:
        return await self._create(path("v1", "events", namespace), body)

    async def read_event(self, namespace: str, name: str) -> Body:
        return await self._call("get", path("v1", "events", namespace, name))

    async def patch_event(self, namespace: str, name: str, patch: Body) -> Body:
        return await self._call(
            "patch", path("v1", "events", namespace, name), patch, content_type=MERGE_PATCH
        )
