"""The operator's Kubernetes API calls, async, bounded in time, with errors that say what to do.

Built on the asyncio flavour of the official client (``kubernetes.aio``),
through its public typed API classes only. The ``*_without_preload_content``
variants are used so that objects stay plain dicts (the shapes the core and
the task pods share) and nothing is converted to typed models and back for
every call. Every call runs under a deadline (``timeout_seconds``), on top of
the client's own. Failures become :class:`ApiError`, which says whether to
retry (timeouts, connection errors, 429, 5xx, 409 Conflict on an update) or
not (any other 4xx: the server will say the same again). Creating what
exists answers None, deleting what is gone is success; nothing else is
swallowed here.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar, cast

import aiohttp
from kubernetes.aio import client

from troupe_operator.api import GROUP, VERSION

Body = dict[str, Any]
MERGE_PATCH: Final = "application/merge-patch+json"
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


M = TypeVar("M")


def _model(kind: type[M], body: Body) -> M:
    """The client's typed model of ``body`` (its API methods validate into one anyway)."""
    model = getattr(kind, "from_dict")(body)  # noqa: B009  # from_dict is untyped upstream
    if model is None:
        raise ValueError(f"not a {kind.__name__}: {body}")
    return cast(M, model)


def _retry_after(headers: Any) -> float | None:
    try:
        return max(0.0, float(headers.get("Retry-After", "")))
    except ValueError:
        return None


async def _answer(response: aiohttp.ClientResponse) -> Body:
    """The JSON body of a response; ApiError for an error status."""
    data = await response.read()
    try:
        body = json.loads(data or b"{}")
    except ValueError:
        body = {"message": data[:300].decode(errors="replace")}
    if response.status >= 400:
        body = body if isinstance(body, dict) else {}
        raise ApiError(
            response.status,
            str(body.get("reason") or response.reason or ""),
            str(body.get("message") or ""),
            _retry_after(response.headers),
        )
    return cast(Body, body)


@dataclass(frozen=True)
class Kube:
    """The calls the Workflow controller makes, each bounded by ``timeout_seconds``."""

    api: client.ApiClient
    timeout_seconds: float

    async def _call(self, request: Callable[[], Awaitable[aiohttp.ClientResponse]]) -> Body:
        try:
            async with asyncio.timeout(self.timeout_seconds):
                return await _answer(await request())
        except TimeoutError:
            raise ApiError(
                NO_STATUS, "Timeout", f"no answer within {self.timeout_seconds}s"
            ) from None
        except (aiohttp.ClientError, OSError) as error:
            raise ApiError(
                NO_STATUS, "ConnectionError", str(error) or type(error).__name__
            ) from None

    @property
    def _options(self) -> dict[str, Any]:
        return {"_request_timeout": self.timeout_seconds}

    async def _create(
        self, request: Callable[[], Awaitable[aiohttp.ClientResponse]]
    ) -> Body | None:
        try:
            return await self._call(request)
        except ApiError as error:
            if error.status == 409 and error.reason == "AlreadyExists":
                return None
            raise

    # -- workflows -------------------------------------------------------------

    async def patch_workflow_status(self, namespace: str, name: str, status: Body) -> Body:
        api = client.CustomObjectsApi(self.api)
        return await self._call(
            lambda: api.patch_namespaced_custom_object_status_without_preload_content(
                GROUP,
                VERSION,
                namespace,
                "workflows",
                name,
                {"status": status},
                _content_type=MERGE_PATCH,
                **self._options,
            )
        )

    # -- jobs and their pods ---------------------------------------------------

    async def create_job(self, namespace: str, body: Body) -> Body | None:
        """The created Job; None when one of that name exists."""
        api = client.BatchV1Api(self.api)
        return await self._create(
            lambda: api.create_namespaced_job_without_preload_content(
                namespace, _model(client.V1Job, body), **self._options
            )
        )

    async def read_job(self, namespace: str, name: str) -> Body | None:
        api = client.BatchV1Api(self.api)
        try:
            return await self._call(
                lambda: api.read_namespaced_job_without_preload_content(
                    name, namespace, **self._options
                )
            )
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    async def list_jobs(self, namespace: str, label_selector: str) -> list[Body]:
        api = client.BatchV1Api(self.api)
        listing = await self._call(
            lambda: api.list_namespaced_job_without_preload_content(
                namespace, label_selector=label_selector, **self._options
            )
        )
        return list(listing.get("items") or [])

    async def delete_job(self, namespace: str, name: str) -> None:
        """Delete a Job and (in the background) its pods; a Job already gone is fine."""
        api = client.BatchV1Api(self.api)
        try:
            await self._call(
                lambda: api.delete_namespaced_job_without_preload_content(
                    name, namespace, propagation_policy="Background", **self._options
                )
            )
        except ApiError as error:
            if error.status != 404:
                raise

    async def list_pods(self, namespace: str, label_selector: str) -> list[Body]:
        api = client.CoreV1Api(self.api)
        listing = await self._call(
            lambda: api.list_namespaced_pod_without_preload_content(
                namespace, label_selector=label_selector, **self._options
            )
        )
        return list(listing.get("items") or [])

    # -- what a run is prepared with -------------------------------------------

    async def create_config_map(self, namespace: str, body: Body) -> Body | None:
        api = client.CoreV1Api(self.api)
        return await self._create(
            lambda: api.create_namespaced_config_map_without_preload_content(
                namespace, _model(client.V1ConfigMap, body), **self._options
            )
        )

    async def read_config_map(self, namespace: str, name: str) -> Body | None:
        api = client.CoreV1Api(self.api)
        try:
            return await self._call(
                lambda: api.read_namespaced_config_map_without_preload_content(
                    name, namespace, **self._options
                )
            )
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    async def create_service_account(self, namespace: str, body: Body) -> Body | None:
        api = client.CoreV1Api(self.api)
        return await self._create(
            lambda: api.create_namespaced_service_account_without_preload_content(
                namespace, _model(client.V1ServiceAccount, body), **self._options
            )
        )

    async def create_role(self, namespace: str, body: Body) -> Body | None:
        api = client.RbacAuthorizationV1Api(self.api)
        return await self._create(
            lambda: api.create_namespaced_role_without_preload_content(
                namespace, _model(client.V1Role, body), **self._options
            )
        )

    async def create_role_binding(self, namespace: str, body: Body) -> Body | None:
        api = client.RbacAuthorizationV1Api(self.api)
        return await self._create(
            lambda: api.create_namespaced_role_binding_without_preload_content(
                namespace, _model(client.V1RoleBinding, body), **self._options
            )
        )

    # -- events ----------------------------------------------------------------

    async def create_event(self, namespace: str, body: Body) -> Body | None:
        api = client.CoreV1Api(self.api)
        return await self._create(
            lambda: api.create_namespaced_event_without_preload_content(
                namespace, _model(client.CoreV1Event, body), **self._options
            )
        )

    async def read_event(self, namespace: str, name: str) -> Body:
        api = client.CoreV1Api(self.api)
        return await self._call(
            lambda: api.read_namespaced_event_without_preload_content(
                name, namespace, **self._options
            )
        )

    async def patch_event(self, namespace: str, name: str, patch: Body) -> Body:
        api = client.CoreV1Api(self.api)
        return await self._call(
            lambda: api.patch_namespaced_event_without_preload_content(
                name, namespace, patch, _content_type=MERGE_PATCH, **self._options
            )
        )
