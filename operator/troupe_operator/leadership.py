"""The operator runs highly available: only the holder of the ``troupe-operator`` Lease reconciles.

Every replica runs ``kopf run -m troupe_operator.main``; a startup handler,
registered before all others, campaigns for the Lease and returns only once
this process leads. kopf starts no watch before its startup handlers are
done, so a standby reads and writes nothing but the Lease. Leadership is
kept by :class:`~troupe_operator.election.LeaderElector` in a background
task; the moment it is lost the process exits (status 1) without another
write, for its Deployment to restart it as a standby, as controller-runtime's
managers do. A graceful shutdown (SIGTERM) releases the Lease in kopf's
cleanup, so a standby takes over within one retry period.

Settings, from the environment: ``TROUPE_LEADER_ELECT`` (``true``; ``false``
for a single replica), ``TROUPE_LEASE_NAME`` (``troupe-operator``),
``POD_NAMESPACE`` (the Lease's namespace, ``default`` outside a cluster),
``POD_NAME`` (the identity, with a random suffix so a restarted pod never
mistakes its predecessor's Lease for its own), and client-go's durations
``TROUPE_LEASE_DURATION_SECONDS`` (15), ``TROUPE_RENEW_DEADLINE_SECONDS``
(10), ``TROUPE_RETRY_PERIOD_SECONDS`` (2). This module refuses to reconcile
anything itself: it only decides whether this process may.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import kopf
from kubernetes.aio import client

from troupe_operator.controller.config import ConfigError
from troupe_operator.controller.kube import Connect
from troupe_operator.controller.lease_store import KubeLeaseStore
from troupe_operator.election import ElectionConfig, LeaderElector, LeadershipLost, Transition
from troupe_operator.election.elector import Work

logger = logging.getLogger(__name__)

EXIT_LOST_LEADERSHIP: Final = 1


@dataclass(frozen=True)
class LeadershipSettings:
    enabled: bool
    namespace: str
    name: str
    identity: str
    election: ElectionConfig

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> LeadershipSettings:
        enabled = environ.get("TROUPE_LEADER_ELECT", "true").lower()
        if enabled not in ("true", "false"):
            raise ConfigError(f"TROUPE_LEADER_ELECT={enabled!r} is not 'true' or 'false'")
        defaults = ElectionConfig()
        try:
            election = ElectionConfig(
                lease_duration=int(
                    environ.get("TROUPE_LEASE_DURATION_SECONDS", defaults.lease_duration)
                ),
                renew_deadline=float(
                    environ.get("TROUPE_RENEW_DEADLINE_SECONDS", defaults.renew_deadline)
                ),
                retry_period=float(
                    environ.get("TROUPE_RETRY_PERIOD_SECONDS", defaults.retry_period)
                ),
            )
        except ValueError as error:
            raise ConfigError(f"leader election settings: {error}") from None
        pod = environ.get("POD_NAME") or socket.gethostname()
        return cls(
            enabled=enabled == "true",
            namespace=environ.get("POD_NAMESPACE", "default"),
            name=environ.get("TROUPE_LEASE_NAME", "troupe-operator"),
            identity=f"{pod}_{uuid.uuid4().hex[:8]}",
            election=election,
        )


def _log_transition(transition: Transition) -> None:
    logger.info("leader election: %s", transition.message)


class Leadership:
    """The campaign of this process, started by kopf's first startup handler."""

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None
        self._api: client.ApiClient | None = None

    async def acquire(self, api: client.ApiClient, settings: LeadershipSettings) -> None:
        """Return once this process leads; from then on, exit the moment it no longer does."""
        self._api = api
        store = KubeLeaseStore(
            api, settings.election.call_timeout, settings.namespace, settings.name
        )
        elector = LeaderElector(
            store, settings.identity, settings.election, observer=_log_transition
        )
        leading = asyncio.Event()

        async def lead() -> None:
            leading.set()
            await asyncio.Event().wait()  # kopf does the work; this only holds the Lease

        self._task = asyncio.create_task(self._campaign(elector, lead))
        logger.info("waiting to lead Lease %s/%s", settings.namespace, settings.name)
        await leading.wait()

    async def _campaign(self, elector: LeaderElector, lead: Work) -> None:
        try:
            await elector.run(lead)
        except LeadershipLost as error:
            logger.error("lost the Lease, exiting to restart as a standby: %s", error)
            os._exit(EXIT_LOST_LEADERSHIP)  # no further write may happen

    async def release(self) -> None:
        """End the campaign gracefully: the elector releases the Lease."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._api is not None:
            await self._api.close()  # type: ignore[no-untyped-call]


def campaign_first(registry: kopf.OperatorRegistry, connect: Connect) -> Leadership:
    """Register the campaign; call before any other startup handler is registered."""
    leadership = Leadership()

    @kopf.on.startup(registry=registry)
    async def lead(**_: object) -> None:
        settings = LeadershipSettings.from_env()
        if settings.enabled:
            await leadership.acquire(await connect(), settings)

    return leadership


def release_last(registry: kopf.OperatorRegistry, leadership: Leadership) -> None:
    """Register the release; call after every other cleanup handler is registered, so the
    Lease is free only once this process's own work has stopped."""

    @kopf.on.cleanup(registry=registry)
    async def step_down(**_: object) -> None:
        await leadership.release()
