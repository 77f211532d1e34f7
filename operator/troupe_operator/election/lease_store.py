"""What the elector needs of the API: one Lease to read, create and replace, nothing else.

The elector (``elector.py``) is pure asyncio so that both the operator and the
agent image can run it, and they talk to the API through different clients:
the operator through ``kubernetes.aio`` (``troupe_operator.controller.lease_store``),
the agent image through the synchronous client only (its image deletes
``kubernetes/aio``; an agent-side store, e.g. the sync client in
``asyncio.to_thread``, is still to be written). Each transport implements this
protocol with plain dicts, as the API sends them, and three kinds of failure.

A store refuses to decide anything: it never retries, never swallows a 409,
never writes a Lease without the ``resourceVersion`` it is given (a PUT carries
the one the elector observed, so a stale write is a 409, never a silent
overwrite), and sets no deadline of its own that the elector relies on: the
elector bounds every call itself.
"""

from __future__ import annotations

from typing import Any, Protocol

Lease = dict[str, Any]
"""A ``coordination.k8s.io/v1`` Lease, as the API sends it."""


class LeaseStoreError(Exception):
    """A call that did not do what was asked: try again later (unreachable, 5xx, 403...)."""


class LeaseConflict(LeaseStoreError):
    """409: the Lease changed since it was read, or already exists: someone else wrote it."""


class LeaseNotFound(LeaseStoreError):
    """404: there is no such Lease yet."""


class LeaseStore(Protocol):
    """One Lease, by namespace and name, through one API client."""

    @property
    def namespace(self) -> str: ...

    @property
    def name(self) -> str: ...

    async def get(self) -> Lease:
        """The Lease as stored; :class:`LeaseNotFound` when there is none."""
        ...

    async def create(self, lease: Lease) -> Lease:
        """The Lease created; :class:`LeaseConflict` when one of its name exists."""
        ...

    async def replace(self, lease: Lease) -> Lease:
        """The Lease written (PUT, guarded by ``metadata.resourceVersion``).

        :class:`LeaseConflict` when the stored Lease has another resourceVersion.
        """
        ...
