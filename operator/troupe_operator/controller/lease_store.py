"""The operator's Lease for leader election, through the controller's own API client.

:class:`KubeLeaseStore` is the ``kubernetes.aio`` transport of
:class:`troupe_operator.election.lease_store.LeaseStore`: it is :class:`Kube`,
so every call has Kube's deadline, its User-Agent and its reading of the
server's answers, and only turns them into what the elector understands: 404
is :class:`LeaseNotFound`, 409 (a stale ``resourceVersion`` or an existing
Lease) is :class:`LeaseConflict`, anything else :class:`LeaseStoreError`.
It writes the Lease it is given, ``resourceVersion`` included, and nothing
else: the elector decides what to write and when, and retries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from troupe_operator.controller.kube import ApiError, Kube, path
from troupe_operator.election.lease_store import (
    Lease,
    LeaseConflict,
    LeaseNotFound,
    LeaseStoreError,
)

LEASES: Final = ("coordination.k8s.io/v1", "leases")


@dataclass(frozen=True)
class KubeLeaseStore(Kube):
    """One Lease, read and written with the operator's client (``timeout_seconds`` per call)."""

    namespace: str
    name: str

    async def get(self) -> Lease:
        return await self._lease_call("get", path(*LEASES, self.namespace, self.name))

    async def create(self, lease: Lease) -> Lease:
        return await self._lease_call("post", path(*LEASES, self.namespace), lease)

    async def replace(self, lease: Lease) -> Lease:
        return await self._lease_call("put", path(*LEASES, self.namespace, self.name), lease)

    async def _lease_call(self, method: str, resource: str, body: Lease | None = None) -> Lease:
        try:
            return await self._call(method, resource, body)
        except ApiError as error:
            if error.status == 404:
                raise LeaseNotFound(str(error)) from None
            if error.status == 409:
                raise LeaseConflict(str(error)) from None
            raise LeaseStoreError(str(error)) from None
