"""Leader election on the emulator's Leases: one leader at a time, whatever happens to it.

Candidates run in the test's event loop, each with its own ``kubernetes.aio`` client
(User-Agent ``<identity>/``, so a fault can aim at one) and its own Prometheus registry;
a sampler reads ``is_leader`` of every candidate every 20 ms. Short durations (lease 2 s,
renew deadline 1 s, retry 0.2 s) keep the tests fast; every bound asserted is derived
from them, and every wait is a wait for a condition.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from kubernetes.aio import client
from prometheus_client import CollectorRegistry

from tests.support.emulator import EmulatedCluster
from tests.support.kube.faults import Target
from troupe_operator.controller.handlers import api_client
from troupe_operator.controller.lease_store import KubeLeaseStore
from troupe_operator.election import (
    Change,
    ElectionConfig,
    LeaderElector,
    LeadershipLost,
    Lease,
    Transition,
)

CONFIG = ElectionConfig(lease_duration=2, renew_deadline=1.0, retry_period=0.2)
NAMESPACE = "default"
LEASE = "troupe-election-test"
SAMPLE_EVERY = 0.02
T = TypeVar("T")


def _now() -> float:
    return asyncio.get_running_loop().time()


async def eventually(probe: Callable[[], T | None], *, timeout: float = 10.0, what: str) -> T:
    """``probe()`` once it is truthy, checked every 10 ms; TimeoutError after ``timeout`` s."""
    deadline = _now() + timeout
    while not (result := probe()):
        if _now() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)
    return result


@dataclass(frozen=True)
class Call:
    """One call a candidate's store made: when it was sent and answered, and how it ended."""

    method: str
    sent: float
    answered: float
    error: str = ""


class ProbedStore:
    """A candidate's real store, recording its calls; its first replace may wait at a gate."""

    def __init__(self, inner: KubeLeaseStore, gate: asyncio.Barrier | None = None) -> None:
        self.inner = inner
        self.gate = gate
        self.calls: list[Call] = []
        self.namespace = inner.namespace
        self.name = inner.name

    async def get(self) -> Lease:
        return await self._record("get", self.inner.get)

    async def create(self, lease: Lease) -> Lease:
        return await self._record("create", lambda: self.inner.create(lease))

    async def replace(self, lease: Lease) -> Lease:
        if self.gate is not None:
            gate, self.gate = self.gate, None
            await gate.wait()
        return await self._record("replace", lambda: self.inner.replace(lease))

    async def _record(self, method: str, call: Callable[[], Coroutine[Any, Any, Lease]]) -> Lease:
        sent = _now()
        try:
            result = await call()
        except Exception as error:
            self.calls.append(Call(method, sent, _now(), type(error).__name__))
            raise
        self.calls.append(Call(method, sent, _now()))
        return result

    def last_write_sent(self) -> float:
        """When the last write that succeeded (a create or a renewal) was sent."""
        return max(call.sent for call in self.calls if call.method != "get" and not call.error)


@dataclass
class Candidate:
    identity: str
    elector: LeaderElector
    store: ProbedStore
    registry: CollectorRegistry
    transitions: list[tuple[float, Transition]] = field(default_factory=list)
    shifts: list[list[float]] = field(default_factory=list)
    """[start, end] of each run of the guarded work, on the loop's clock."""
    task: asyncio.Task[None] | None = None

    async def work(self) -> None:
        shift = [_now(), float("inf")]
        self.shifts.append(shift)
        try:
            await asyncio.Event().wait()
        finally:
            shift[1] = _now()

    def when(self, change: Change) -> float:
        """When this candidate last reported ``change``."""
        return max(at for at, transition in self.transitions if transition.change == change)

    def changes(self) -> list[tuple[Change, str]]:
        return [(transition.change, transition.holder) for _, transition in self.transitions]

    @property
    def gauge(self) -> float | None:
        return self.registry.get_sample_value("leader_election_master_status", {"name": LEASE})


class Pool:
    """Candidates for one Lease on the emulator, and a sampler of who leads."""

    def __init__(self, emulator: EmulatedCluster, config: ElectionConfig) -> None:
        self.emulator = emulator
        self.config = config
        self.candidates: list[Candidate] = []
        self.samples: list[tuple[float, frozenset[str]]] = []
        self._apis: list[client.ApiClient] = []
        self._names = (f"elector-{n}" for n in itertools.count(1))

    def add(self, gate: asyncio.Barrier | None = None) -> Candidate:
        """A new candidate, campaigning at once."""
        identity = next(self._names)
        api = api_client(client.Configuration(host=self.emulator.url), f"{identity}/")
        self._apis.append(api)
        store = ProbedStore(KubeLeaseStore(api, self.config.call_timeout, NAMESPACE, LEASE), gate)
        registry = CollectorRegistry()
        transitions: list[tuple[float, Transition]] = []
        elector = LeaderElector(
            store,
            identity,
            self.config,
            observer=lambda transition: transitions.append((_now(), transition)),
            registry=registry,
        )
        candidate = Candidate(identity, elector, store, registry, transitions)
        self.candidates.append(candidate)
        self.start(candidate)
        return candidate

    def start(self, candidate: Candidate) -> None:
        candidate.task = asyncio.create_task(candidate.elector.run(candidate.work))

    async def stop(self, candidate: Candidate) -> None:
        """Shut the candidate down gracefully: it releases the Lease if it holds it."""
        assert candidate.task is not None
        candidate.task.cancel()
        with suppress(asyncio.CancelledError, LeadershipLost):
            await candidate.task

    async def crash(self, candidate: Candidate) -> None:
        """Cut the candidate off the API, then end it: its release never arrives."""
        self.emulator.faults.fail(Target(f"{candidate.identity}/"), 503)
        await self.stop(candidate)

    def leaders(self) -> list[Candidate]:
        return [candidate for candidate in self.candidates if candidate.elector.is_leader]

    async def leader(self, *, other_than: Candidate | None = None) -> Candidate:
        def one() -> Candidate | None:
            leaders = self.leaders()
            return leaders[0] if len(leaders) == 1 and leaders[0] is not other_than else None

        return await eventually(one, what="one leader")

    async def _sample(self) -> None:
        while True:
            leaders = frozenset(candidate.identity for candidate in self.leaders())
            self.samples.append((_now(), leaders))
            await asyncio.sleep(SAMPLE_EVERY)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Pool]:
        sampler = asyncio.create_task(self._sample())
        try:
            yield self
        finally:
            sampler.cancel()
            for candidate in self.candidates:
                if candidate.task is not None:
                    candidate.task.cancel()
            tasks = [c.task for c in self.candidates if c.task is not None]
            await asyncio.gather(sampler, *tasks, return_exceptions=True)
            for api in self._apis:
                await api.close()


async def _stored_lease(pool: Pool) -> Lease:
    return await pool.candidates[0].store.inner.get()


HANDOVERS = ("release", "crash", "release")


@pytest.mark.parametrize("candidates", [2, 3])
async def test_one_leader_at_every_instant_across_hand_overs(
    emulator: EmulatedCluster, candidates: int
) -> None:
    async with Pool(emulator, CONFIG).running() as pool:
        for _ in range(candidates):
            pool.add()
        leader = await pool.leader()
        windows = [(0.0, leader.when(Change.STARTED_LEADING))]
        for how in HANDOVERS:
            begun = _now()
            if how == "crash":
                await pool.crash(leader)
            else:
                await pool.stop(leader)
            successor = await pool.leader(other_than=leader)
            took = successor.when(Change.STARTED_LEADING)
            windows.append((begun, took))
            if how == "crash":
                expiry = leader.store.last_write_sent() + CONFIG.lease_duration
                assert expiry <= took, "taken only once expired on the successor's clock"
                assert took - begun < CONFIG.lease_duration + 2 * (
                    CONFIG.retry_period + CONFIG.call_timeout
                )
            else:
                assert took - begun < CONFIG.retry_period + CONFIG.call_timeout
            pool.add()
            leader = successor
        await eventually(lambda: pool.samples[-1][0] > took, what="a sample of the last leader")

    assert max(len(leaders) for _, leaders in pool.samples) == 1
    assert all(
        any(start <= at <= end for start, end in windows)
        for at, leaders in pool.samples
        if not leaders
    ), "nobody leads only during a hand-over"
    shifts = sorted(shift for candidate in pool.candidates for shift in candidate.shifts)
    assert len(shifts) == len(HANDOVERS) + 1
    assert all(earlier[1] <= later[0] for earlier, later in itertools.pairwise(shifts)), (
        "guarded work never overlaps"
    )


async def test_of_two_writes_on_one_resource_version_one_is_refused(
    emulator: EmulatedCluster,
) -> None:
    emulator.create(
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": LEASE, "namespace": NAMESPACE},
            "spec": {"holderIdentity": "gone", "leaseDurationSeconds": 1},
        }
    )
    config = ElectionConfig(lease_duration=4, renew_deadline=3.0, retry_period=0.2)
    gate = asyncio.Barrier(2)  # both take over the expired Lease with the version they read
    async with Pool(emulator, config).running() as pool:
        first, second = pool.add(gate), pool.add(gate)
        winner = await pool.leader()
        loser = second if winner is first else first
        await eventually(lambda: loser.elector.holder == winner.identity, what="loser re-read")
        assert not loser.elector.is_leader
        assert ("replace", "LeaseConflict") in [(c.method, c.error) for c in loser.store.calls]
        assert winner.elector.lease_transitions == 1
        assert (await _stored_lease(pool))["spec"]["holderIdentity"] == winner.identity


async def test_a_write_behind_the_leaders_back_ends_its_leadership(
    emulator: EmulatedCluster,
) -> None:
    async with Pool(emulator, CONFIG).running() as pool:
        pool.add()
        leader = await pool.leader()
        assert leader.task is not None
        lease = await _stored_lease(pool)
        intruded = _now()
        await leader.store.inner.replace(
            {**lease, "spec": {**lease["spec"], "holderIdentity": "intruder"}}
        )
        with pytest.raises(LeadershipLost, match="intruder holds the Lease"):
            await leader.task
        stopped = leader.when(Change.STOPPED_LEADING)
        assert (
            stopped - intruded < CONFIG.retry_period + CONFIG.call_timeout < CONFIG.renew_deadline
        )
        assert ("replace", "LeaseConflict") in [(c.method, c.error) for c in leader.store.calls]
        assert (await _stored_lease(pool))["spec"]["holderIdentity"] == "intruder"
        assert stopped <= leader.shifts[0][1] < float("inf"), "the guarded work was ended"


FAULTS: dict[str, Callable[[EmulatedCluster, Target], object]] = {
    "fail": lambda emulator, target: emulator.faults.fail(target, 503),
    "hang": lambda emulator, target: emulator.faults.delay(target, 30),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
async def test_a_leader_whose_renewals_fail_stops_before_its_lease_can_be_taken(
    emulator: EmulatedCluster, fault: str
) -> None:
    async with Pool(emulator, CONFIG).running() as pool:
        leader = pool.add()
        await pool.leader()
        follower = pool.add()
        await eventually(lambda: follower.elector.holder == leader.identity, what="follower")
        FAULTS[fault](emulator, Target(f"{leader.identity}/"))
        successor = await pool.leader(other_than=leader)
        assert successor is follower
        assert leader.task is not None and leader.task.done()
        with pytest.raises(LeadershipLost, match="not renewed within 1s"):
            leader.task.result()

    renewed = leader.store.last_write_sent()
    stopped = leader.when(Change.STOPPED_LEADING)
    took = follower.when(Change.STARTED_LEADING)
    assert CONFIG.renew_deadline - 0.01 <= stopped - renewed < CONFIG.lease_duration
    assert stopped < renewed + CONFIG.lease_duration <= took
    assert leader.shifts[0][1] < took


async def test_the_gauge_and_lease_transitions_follow_the_leader(
    emulator: EmulatedCluster,
) -> None:
    async with Pool(emulator, CONFIG).running() as pool:
        a = pool.add()
        await pool.leader()
        b = pool.add()
        await eventually(lambda: b.elector.holder == a.identity, what="b to see a")
        assert (a.gauge, b.gauge, a.elector.lease_transitions) == (1, 0, 0)

        await pool.stop(a)  # released: b takes over at its next try
        assert await pool.leader() is b
        assert (a.gauge, b.gauge, b.elector.lease_transitions) == (0, 1, 1)

        pool.start(a)
        await eventually(lambda: a.elector.holder == b.identity, what="a to see b")
        emulator.faults.fail(Target(f"{b.identity}/"), 503)  # b stops; a takes over on expiry
        assert await pool.leader(other_than=b) is a
        assert (a.gauge, b.gauge, a.elector.lease_transitions) == (1, 0, 2)
        assert (await _stored_lease(pool))["spec"]["leaseTransitions"] == 2

    assert a.changes() == [
        (Change.STARTED_LEADING, a.identity),
        (Change.STOPPED_LEADING, a.identity),
        (Change.NEW_HOLDER, ""),
        (Change.NEW_HOLDER, b.identity),
        (Change.STARTED_LEADING, a.identity),
        (Change.STOPPED_LEADING, a.identity),
        (Change.NEW_HOLDER, ""),
    ]
    assert b.changes() == [
        (Change.NEW_HOLDER, a.identity),
        (Change.NEW_HOLDER, ""),
        (Change.STARTED_LEADING, b.identity),
        (Change.STOPPED_LEADING, b.identity),
    ]
