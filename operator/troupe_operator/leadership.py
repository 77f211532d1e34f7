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

Each transition a replica sees (``StartedLeading``, ``StoppedLeading``,
``LeaderChanged``) is logged and posted as an Event on the Lease, reported
by ``troupe-operator`` with the replica's identity as instance, so
``kubectl describe lease troupe-operator`` tells who led when. The posts run
in tasks of their own, each bounded by the Lease calls' timeout, and a
failed one is only logged: the elector must never wait on them. A graceful
shutdown waits for them before closing the client; a lost Lease does not:
the process exits at once, before its Warning Event gets out, for every
moment spent waiting would let kopf's handlers write on while another
replica may already lead. The loss is in the log, and the new holder's
``StartedLeading`` and the restarted replica's ``LeaderChanged`` tell it.

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
from datetime import UTC, datetime
from typing import Any, Final

import kopf
from kubernetes.aio import client

from troupe_operator.controller.config import ConfigError
from troupe_operator.controller.events import EventRecorder
from troupe_operator.controller.kube import Body, Connect
from troupe_operator.controller.lease_store import LEASES, KubeLeaseStore
from troupe_operator.election import ElectionConfig, LeaderElector, LeadershipLost, Transition
from troupe_operator.election.elector import Work
from troupe_operator.election.settings import election_config_from_env
from troupe_operator.workflow import Event, EventType

logger = logging.getLogger(__name__)

EXIT_LOST_LEADERSHIP: Final = 1
COMPONENT: Final = "troupe-operator"
"""Who reports the election's Events, as client-go's electors report their component's name."""


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
        try:
            election = election_config_from_env(environ)
        except ValueError as error:
            raise ConfigError(str(error)) from None
        pod = environ.get("POD_NAME") or socket.gethostname()
        return cls(
            enabled=enabled == "true",
            namespace=environ.get("POD_NAMESPACE", "default"),
            name=environ.get("TROUPE_LEASE_NAME", "troupe-operator"),
            identity=f"{pod}_{uuid.uuid4().hex[:8]}",
            election=election,
        )


def _now() -> datetime:
    return datetime.now(UTC)


class LeaseEvents(EventRecorder):
    """The elector's observer: each transition, logged and posted as an Event on the Lease.

    The Workflow controller's recorder, so an Event is named by what it says
    and a repeat is counted on one object.
    """

    def __init__(self, store: KubeLeaseStore, identity: str) -> None:
        super().__init__(store, identity, _now)
        self._lease = {
            "metadata": {"namespace": store.namespace, "name": store.name, "uid": identity}
        }
        """The Lease as the recorder names Events after it. Its uid is unknown (the elector
        keeps the Lease it read to itself) and left out of the Events; in its place the
        identity keeps two replicas' same words ("nobody holds the Lease") two Events, as
        client-go's correlator keeps its sources apart."""
        self._posting: set[asyncio.Task[None]] = set()
        """Posts under way: the loop keeps only weak references to tasks."""

    def observe(self, transition: Transition) -> None:
        """Told in the elector's task, which must not wait: the post gets a task of its own."""
        logger.info("leader election: %s", transition.message)
        task = asyncio.create_task(self._post(transition))
        self._posting.add(task)
        task.add_done_callback(self._posting.discard)

    async def drain(self) -> None:
        """Wait for the posts under way (each is bounded), before the client is closed."""
        if self._posting:
            await asyncio.wait(self._posting)

    async def _post(self, transition: Transition) -> None:
        kind = EventType.WARNING if transition.lost else EventType.NORMAL
        event = Event(kind, transition.change.value, transition.message)
        try:
            async with asyncio.timeout(self.kube.timeout_seconds):
                await self.post(self._lease, event)
        except TimeoutError:
            logger.warning(
                "could not post Event %s on the Lease within %gs",
                event.reason,
                self.kube.timeout_seconds,
            )

    def _body(self, lease: Mapping[str, Any], event: Event, name: str, now: str) -> Body:
        body = super()._body(lease, event, name, now)
        metadata = lease["metadata"]
        body["involvedObject"] = {
            "apiVersion": LEASES[0],
            "kind": "Lease",
            "namespace": metadata["namespace"],
            "name": metadata["name"],
        }
        body["source"] = {"component": COMPONENT}
        body["reportingComponent"] = COMPONENT
        return body


class Leadership:
    """The campaign of this process, started by kopf's first startup handler."""

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None
        self._api: client.ApiClient | None = None
        self._events: LeaseEvents | None = None

    async def acquire(self, api: client.ApiClient, settings: LeadershipSettings) -> None:
        """Return once this process leads; from then on, exit the moment it no longer does."""
        self._api = api
        store = KubeLeaseStore(
            api, settings.election.call_timeout, settings.namespace, settings.name
        )
        self._events = LeaseEvents(store, settings.identity)
        elector = LeaderElector(
            store, settings.identity, settings.election, observer=self._events.observe
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
        if self._events is not None:
            await self._events.drain()
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
