"""Leader election on a ``coordination.k8s.io/v1`` Lease, in asyncio, with client-go's rules.

One process at a time runs the guarded work: the operator's controller (HA
replicas) or an agents' supervisor. :meth:`LeaderElector.run` campaigns
until it holds the Lease, runs the work while it renews, and ends it when the
lease is lost. The semantics are client-go's ``tools/leaderelection``:

- a candidate acquires by creating the Lease, or by writing itself as holder
  into one whose holder is empty or whose record has not changed for
  ``leaseDurationSeconds`` *as measured on this process's monotonic clock
  from the moment it observed that record* (client-go's ``observedTime``).
  ``renewTime`` and ``acquireTime`` are written for people and tools and
  never read: no remote time is ever compared with a local one;
- every write is a PUT carrying the ``resourceVersion`` that was read (or a
  create), so of two candidates racing for the same version one gets a 409,
  re-reads the Lease and does not lead; a leader whose renewal meets a 409
  re-reads too, and stops at once if someone else holds the Lease;
- the leader renews every ``retry_period``; each API call is bounded by half
  the ``renew_deadline``; a leader that has not renewed within
  ``renew_deadline`` of *sending* its last successful renewal stops leading
  (``is_leader`` turns false at that instant, the work is cancelled) before
  any other candidate can take the Lease: they wait ``lease_duration`` from
  when they saw that renewal, which was after it was sent, and
  ``renew_deadline < lease_duration``;
- on a graceful end (the caller cancels :meth:`run`, or the work returns)
  the work is ended first, then the Lease is released: holder cleared,
  ``leaseDurationSeconds: 1``, so a waiting candidate takes it at its next
  try, within one ``retry_period``.

Why not the official client's own electors (``kubernetes`` 37.0.2, read as
installed): ``kubernetes.leaderelection`` runs the guarded work in a daemon
thread that nothing can stop when leadership is lost, and
``kubernetes.aio.leaderelection`` (the asyncio copy) shares the rest of its
flaws: neither bounds an API call (no ``_request_timeout``, no
``asyncio.timeout``; the renew deadline is only checked between calls, so a
hung call keeps a leader leading past its Lease's expiry), both measure the
observed time and the renew deadline with ``time.time()`` (a wall-clock step
moves them), neither releases the Lease on shutdown (a graceful restart
costs a full lease duration), neither writes ``leaseTransitions``, a 409 is
only logged while the leader keeps leading until its renew deadline, and
neither tells of a new holder (client-go's ``OnNewLeader``); the asyncio one also writes local
time labelled UTC as ``renewTime`` (``datetime.fromtimestamp`` + "Z"), refuses
a ``retry_period`` under one second and does not wait for the cancelled work
to end.

This module refuses fractional lease durations (``leaseDurationSeconds``
holds whole seconds; rounding would silently change the guarantee) and any
transport of its own: calls go through a
:class:`~troupe_operator.election.lease_store.LeaseStore`. Like client-go's,
it does no fencing: the guarantee rests on the candidates' clocks running at
rates within ``lease_duration / renew_deadline`` of each other.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from prometheus_client import REGISTRY, CollectorRegistry

from troupe_operator.election.lease_store import (
    Lease,
    LeaseConflict,
    LeaseNotFound,
    LeaseStore,
    LeaseStoreError,
)
from troupe_operator.election.metrics import master_status

logger = logging.getLogger(__name__)

RELEASED_LEASE_SECONDS: Final = 1
"""``leaseDurationSeconds`` of a released Lease, as client-go writes it."""


@dataclass(frozen=True)
class ElectionConfig:
    """How long a lease lasts and how hard its holder tries to keep it (client-go's defaults)."""

    lease_duration: int = 15
    """Seconds a candidate waits, from when it saw the record change, before taking the Lease."""

    renew_deadline: float = 10.0
    """Seconds the leader keeps leading without a successful renewal."""

    retry_period: float = 2.0
    """Seconds between tries, to acquire or to renew."""

    def __post_init__(self) -> None:
        if isinstance(self.lease_duration, bool) or not isinstance(self.lease_duration, int):
            raise ValueError(f"lease_duration={self.lease_duration!r}: a Lease holds whole seconds")
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError(
                "0 < retry_period < renew_deadline < lease_duration is required, got "
                f"{self.retry_period} / {self.renew_deadline} / {self.lease_duration}"
            )

    @property
    def call_timeout(self) -> float:
        """The bound on each API call: half the renew deadline, so a renewal can be retried."""
        return self.renew_deadline / 2


class Change(enum.Enum):
    """What a :class:`Transition` reports (the values read well as Event reasons)."""

    NEW_HOLDER = "LeaderChanged"
    """Another identity holds the Lease now (or nobody: holder "")."""
    STARTED_LEADING = "StartedLeading"
    STOPPED_LEADING = "StoppedLeading"


@dataclass(frozen=True)
class Transition:
    """One change of who leads, as this process saw it."""

    change: Change
    holder: str
    """The holder's identity as last observed; "" when nobody holds the Lease."""
    lease_transitions: int
    message: str
    """One line for an Event or a log: who, and for a stop, why."""
    lost: bool = False
    """For a stop: the Lease was lost (taken, or not renewed in time), not released."""


Observer = Callable[[Transition], None]
"""Told of each transition, in the elector's task: it must not block (start a task for I/O)."""

Work = Callable[[], Coroutine[Any, Any, object]]


class LeadershipLost(Exception):
    """The Lease was lost while the work ran; the work was cancelled."""


class LeaderElector:
    """One candidate for one Lease; :meth:`run` leads it and guards work with it."""

    def __init__(
        self,
        store: LeaseStore,
        identity: str,
        config: ElectionConfig = ElectionConfig(),
        *,
        observer: Observer | None = None,
        registry: CollectorRegistry = REGISTRY,
        announce: Mapping[str, str] | None = None,
    ) -> None:
        if not identity:
            raise ValueError("a candidate needs an identity, unique among its candidates")
        self.store = store
        self.identity = identity
        self.config = config
        self._observer = observer
        self._announce = dict(announce or {})
        """Annotations this candidate writes on the Lease while it holds it (how to reach it)."""
        self._gauge = master_status(registry).labels(name=store.name)
        self._gauge.set(0)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lease: Lease | None = None
        self._observed_at = 0.0
        """Loop time at which the Lease's spec was first seen as it is now."""
        self._leading_until: float | None = None
        """Loop time at which a leader that has not renewed stops; None when not leading."""
        self._reported_holder = ""

    # -- what callers read -----------------------------------------------------

    @property
    def holder(self) -> str:
        """The identity holding the Lease as last observed; "" for nobody or not read yet."""
        return _holder(self._lease)

    @property
    def lease_transitions(self) -> int:
        """``spec.leaseTransitions`` as last observed: how often the Lease changed hands."""
        return _transitions(self._lease)

    @property
    def holder_annotations(self) -> Mapping[str, str]:
        """What the holder announced on the Lease (see ``announce``); empty when nobody holds it."""
        if not self.holder:
            return {}
        return dict(((self._lease or {}).get("metadata") or {}).get("annotations") or {})

    @property
    def is_leader(self) -> bool:
        """Whether this process leads now: false from the renew deadline on, whatever runs late."""
        return (
            self._leading_until is not None
            and self._loop is not None
            and self._loop.time() < self._leading_until
        )

    # -- the campaign ----------------------------------------------------------

    async def run(self, work: Work) -> None:
        """Acquire the Lease, run ``work()`` while holding it, then release it.

        Returns (or raises what the work raised) when the work ends by itself.
        Raises :class:`LeadershipLost` when the Lease is lost, after cancelling
        the work and waiting for it. Cancelled, it cancels the work, waits for
        it, then releases the Lease. The work must end promptly when cancelled:
        this process no longer leads by then.
        """
        self._loop = asyncio.get_running_loop()
        while (until := await self._try_acquire_or_renew()) is None:
            await asyncio.sleep(self.config.retry_period)
        self._started_leading()
        guarded = asyncio.create_task(work(), name=f"guarded by {self._describe()}")
        keeper = asyncio.create_task(self._keep_leading(until), name=f"renewing {self._describe()}")
        lost: str | None = None
        try:
            await asyncio.wait((guarded, keeper), return_when=asyncio.FIRST_COMPLETED)
            if keeper.done():
                lost = keeper.result()
        finally:
            self._stopped_leading(lost)
            keeper.cancel()
            guarded.cancel()
            await asyncio.wait((guarded, keeper))
            if lost is None:
                await self._release()
        if lost is not None:
            raise LeadershipLost(lost)
        guarded.result()

    async def _keep_leading(self, until: float) -> str:
        """Renew every retry period until the Lease is lost; why it was."""
        try:
            async with asyncio.timeout_at(until) as deadline:
                while True:
                    await asyncio.sleep(self.config.retry_period)
                    if (renewed := await self._try_acquire_or_renew()) is not None:
                        deadline.reschedule(renewed)
                    elif self.holder != self.identity:
                        return f"{self._held_by()} holds the Lease"
        except TimeoutError:
            return f"not renewed within {self.config.renew_deadline:g}s"

    async def _try_acquire_or_renew(self) -> float | None:
        """One try; when this process holds a Lease it has just written, until when it leads."""
        if not self.is_leader:  # the leader writes what it last wrote: its version is current
            try:
                self._observe(await self._call(self.store.get()))
            except LeaseNotFound:
                return await self._write(None)
            except LeaseStoreError as error:
                logger.warning("Cannot read %s: %s", self._describe(), error)
                return None
            if self._held_by_another():
                return None
        return await self._write(self._lease)

    async def _write(self, lease: Lease | None) -> float | None:
        """Create the Lease (None), or write this process into the one read.

        Until when this process leads; None when the write was refused.
        """
        sent_at = self._now()
        body = self._claim(lease)
        try:
            if lease is None:
                written = await self._call(self.store.create(body))
            else:
                written = await self._call(self.store.replace(body))
        except LeaseConflict as conflict:
            logger.info("%s was written by someone else (%s)", self._describe(), conflict)
            await self._reread()
            return None
        except LeaseStoreError as error:
            logger.warning("Cannot write %s: %s", self._describe(), error)
            return None
        self._observe(written)
        self._leading_until = sent_at + self.config.renew_deadline
        return self._leading_until

    def _claim(self, lease: Lease | None) -> Lease:
        """The Lease with this process as holder: renewed if it held it, else taken over."""
        now = _micro_time()
        spec = _spec(lease)
        renewing = _holder(lease) == self.identity
        claimed = {
            **spec,
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.config.lease_duration,
            "acquireTime": spec.get("acquireTime", now) if renewing else now,
            "renewTime": now,
            "leaseTransitions": _transitions(lease) + (0 if renewing or lease is None else 1),
        }
        base = lease or self._new_lease()
        return {**base, "metadata": self._annotated(base, self._announce), "spec": claimed}

    async def _release(self) -> None:
        """Clear the holder, so that a waiting candidate takes the Lease at its next try."""
        if self._lease is None or self.holder != self.identity:
            return
        now = _micro_time()
        spec = {
            **_spec(self._lease),
            "holderIdentity": "",
            "leaseDurationSeconds": RELEASED_LEASE_SECONDS,
            "acquireTime": now,
            "renewTime": now,
        }
        metadata = self._annotated(self._lease, dict.fromkeys(self._announce))
        released = {**self._lease, "metadata": metadata, "spec": spec}
        try:
            self._observe(await self._call(self.store.replace(released)))
        except LeaseStoreError as error:
            logger.warning("Cannot release %s, it will expire: %s", self._describe(), error)

    async def _reread(self) -> None:
        try:
            self._observe(await self._call(self.store.get()))
        except LeaseStoreError as error:
            logger.warning("Cannot read %s: %s", self._describe(), error)

    async def _call(self, call: Coroutine[Any, Any, Lease]) -> Lease:
        """A store call, bounded by the configured call timeout."""
        try:
            async with asyncio.timeout(self.config.call_timeout):
                return await call
        except TimeoutError:
            raise LeaseStoreError(f"no answer within {self.config.call_timeout:g}s") from None

    # -- what was observed -----------------------------------------------------

    def _observe(self, lease: Lease) -> None:
        """Remember the Lease; restart the expiry clock when its record changed."""
        if _spec(lease) != _spec(self._lease):
            self._observed_at = self._now()
        self._lease = lease
        holder = self.holder
        if holder != self._reported_holder:
            self._reported_holder = holder
            if holder != self.identity:
                self._notify(Change.NEW_HOLDER, f"{self._held_by()} holds the Lease")

    def _held_by_another(self) -> bool:
        """Whether someone else holds the Lease and its record changed within its duration."""
        holder = self.holder
        duration = int(_spec(self._lease).get("leaseDurationSeconds") or 0)
        return (
            bool(holder)
            and holder != self.identity
            and (self._now() < self._observed_at + duration)
        )

    def _started_leading(self) -> None:
        self._gauge.set(1)
        logger.info("%s: %s became leader", self._describe(), self.identity)
        self._notify(Change.STARTED_LEADING, f"{self.identity} became leader")

    def _stopped_leading(self, lost: str | None) -> None:
        self._leading_until = None
        self._gauge.set(0)
        if lost is None:
            message = f"{self.identity} stopped leading, releasing the Lease"
            logger.info("%s: %s", self._describe(), message)
        else:
            message = f"{self.identity} lost the Lease: {lost}"
            logger.warning("%s: %s", self._describe(), message)
        self._notify(Change.STOPPED_LEADING, message, lost=lost is not None)

    def _notify(self, change: Change, message: str, *, lost: bool = False) -> None:
        if self._observer is None:
            return
        try:
            self._observer(Transition(change, self.holder, self.lease_transitions, message, lost))
        except Exception:
            logger.exception("The observer of %s failed on %s", self._describe(), change.value)

    # -- small helpers ---------------------------------------------------------

    def _now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    def _new_lease(self) -> Lease:
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.store.name, "namespace": self.store.namespace},
        }

    @staticmethod
    def _annotated(lease: Lease, annotations: Mapping[str, str | None]) -> dict[str, Any]:
        """The Lease's metadata with ``annotations`` set (None: removed)."""
        metadata = dict(lease.get("metadata") or {})
        merged = {**(metadata.get("annotations") or {}), **annotations}
        kept = {key: value for key, value in merged.items() if value is not None}
        if kept or "annotations" in metadata:
            metadata["annotations"] = kept
        return metadata

    def _held_by(self) -> str:
        return self.holder or "nobody"

    def _describe(self) -> str:
        return f"Lease {self.store.namespace}/{self.store.name}"


def _spec(lease: Lease | None) -> dict[str, Any]:
    return dict((lease or {}).get("spec") or {})


def _holder(lease: Lease | None) -> str:
    return str(_spec(lease).get("holderIdentity") or "")


def _transitions(lease: Lease | None) -> int:
    return int(_spec(lease).get("leaseTransitions") or 0)


def _micro_time() -> str:
    """Now as a ``MicroTime`` (for people and tools only: no decision reads it)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
