"""The agent pods' Lease for their supervisor election, through the synchronous client.

:class:`ApiLeaseStore` is the agent image's transport of
:class:`troupe_operator.election.LeaseStore` (the image has no
``kubernetes.aio``): each call runs the generated client in a worker thread
(``asyncio.to_thread``) with ``_request_timeout`` set to the elector's bound
on a call, so an abandoned thread ends on its own soon after the elector has
stopped waiting for it. Bodies go and come as plain dicts, as the API sends
them (``_preload_content=False``: no model round trip drops a field).
Like every store, it refuses to retry or to decide: 404 is
:class:`LeaseNotFound`, 409 :class:`LeaseConflict`, anything else
(refusals, 5xx, timeouts, connection errors) :class:`LeaseStoreError`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import urllib3
from kubernetes.client import ApiClient, CoordinationV1Api
from kubernetes.client.exceptions import ApiException

from troupe_operator.election import Lease, LeaseConflict, LeaseNotFound, LeaseStoreError


class ApiLeaseStore:
    """One Lease, read and written in worker threads, each call within ``timeout`` seconds."""

    def __init__(self, api_client: ApiClient, namespace: str, name: str, timeout: float) -> None:
        self._api = CoordinationV1Api(api_client)
        self._namespace = namespace
        self._name = name
        self._timeout = timeout

    @property
    def namespace(self) -> str:
        return self._namespace

    @property
    def name(self) -> str:
        return self._name

    async def get(self) -> Lease:
        return await self._call(
            lambda **options: self._api.read_namespaced_lease(
                self._name, self._namespace, **options
            )
        )

    async def create(self, lease: Lease) -> Lease:
        return await self._call(
            lambda **options: self._api.create_namespaced_lease(
                self._namespace,
                lease,  # type: ignore[arg-type]  # a dict is sent as it is
                **options,
            )
        )

    async def replace(self, lease: Lease) -> Lease:
        return await self._call(
            lambda **options: self._api.replace_namespaced_lease(
                self._name,
                self._namespace,
                lease,  # type: ignore[arg-type]  # a dict is sent as it is
                **options,
            )
        )

    async def _call(self, request: Callable[..., Any]) -> Lease:
        return await asyncio.to_thread(self._blocking, request)

    def _blocking(self, request: Callable[..., Any]) -> Lease:
        try:
            response = request(_request_timeout=self._timeout, _preload_content=False)
        except ApiException as error:
            detail = f"HTTP {error.status} {error.reason}"
            if error.status == 404:
                raise LeaseNotFound(detail) from None
            if error.status == 409:
                raise LeaseConflict(detail) from None
            raise LeaseStoreError(detail) from None
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise LeaseStoreError(f"cannot reach the Kubernetes API: {error}") from None
        lease: Lease = json.loads(response.data)
        return lease
