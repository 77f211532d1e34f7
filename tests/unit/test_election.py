"""The elector's rules that need no API server: its settings, its clock, its bound on calls."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from troupe_operator.election import (
    Change,
    ElectionConfig,
    LeaderElector,
    Lease,
    LeaseConflict,
    LeaseNotFound,
    Transition,
)
from troupe_operator.election.settings import election_config_from_env

FAST = ElectionConfig(lease_duration=2, renew_deadline=1.0, retry_period=0.05)


class MemoryStore:
    """One Lease in memory, with the API server's resourceVersion rules."""

    namespace = "default"
    name = "lease"

    def __init__(self, lease: Lease | None = None) -> None:
        self.lease = lease
        self.version = 1

    async def get(self) -> Lease:
        if self.lease is None:
            raise LeaseNotFound("404")
        return copy.deepcopy(self.lease)

    async def create(self, lease: Lease) -> Lease:
        if self.lease is not None:
            raise LeaseConflict("409 AlreadyExists")
        return self._store(lease)

    async def replace(self, lease: Lease) -> Lease:
        stored = await self.get()
        if lease["metadata"].get("resourceVersion") != stored["metadata"]["resourceVersion"]:
            raise LeaseConflict("409 Conflict")
        return self._store(lease)

    def _store(self, lease: Lease) -> Lease:
        self.version += 1
        metadata = {**lease["metadata"], "resourceVersion": str(self.version)}
        self.lease = {**copy.deepcopy(lease), "metadata": metadata}
        return copy.deepcopy(self.lease)


class HangingStore(MemoryStore):
    """A store whose reads never answer; it notes when each was given up."""

    def __init__(self) -> None:
        super().__init__()
        self.given_up: list[float] = []

    async def get(self) -> Lease:
        try:
            await asyncio.Event().wait()
        finally:
            self.given_up.append(asyncio.get_running_loop().time())
        raise AssertionError("unreachable")


def _elector(store: MemoryStore, transitions: list[Transition] | None = None) -> LeaderElector:
    observer = None if transitions is None else transitions.append
    return LeaderElector(store, "me", FAST, observer=observer, registry=CollectorRegistry())


async def _forever() -> None:
    await asyncio.Event().wait()


@pytest.mark.parametrize(
    ("settings", "refused"),
    [
        ({"lease_duration": 1.5}, "whole seconds"),
        ({"lease_duration": True}, "whole seconds"),
        ({"renew_deadline": 15.0}, "renew_deadline < lease_duration"),
        ({"retry_period": 10.0}, "retry_period < renew_deadline"),
        ({"retry_period": 0.0}, "0 < retry_period"),
    ],
)
def test_settings_that_cannot_keep_the_promise_are_refused(
    settings: dict[str, Any], refused: str
) -> None:
    with pytest.raises(ValueError, match=refused):
        ElectionConfig(**settings)


def test_client_gos_defaults() -> None:
    config = ElectionConfig()
    assert (config.lease_duration, config.renew_deadline, config.retry_period) == (15, 10, 2)
    assert config.call_timeout == 5


@pytest.mark.parametrize(
    "renew_time", ["1970-01-01T00:00:00.000000Z", "2999-01-01T00:00:00.000000Z", "not a time"]
)
async def test_expiry_counts_from_when_the_record_was_seen_never_from_its_renew_time(
    renew_time: str,
) -> None:
    held = {"holderIdentity": "other", "leaseDurationSeconds": 1, "renewTime": renew_time}
    store = MemoryStore({"metadata": {"name": "lease", "resourceVersion": "1"}, "spec": held})
    transitions: list[Transition] = []
    elector = _elector(store, transitions)
    loop = asyncio.get_running_loop()
    started = loop.time()
    task = asyncio.create_task(elector.run(_forever))
    try:
        while not elector.is_leader:
            await asyncio.sleep(0.01)
        waited = loop.time() - started
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert 1.0 <= waited < 1.0 + 10 * FAST.retry_period
    assert [t.change for t in transitions][:2] == [Change.NEW_HOLDER, Change.STARTED_LEADING]
    assert transitions[1].lease_transitions == 1


async def test_each_call_is_bounded_by_half_the_renew_deadline() -> None:
    store = HangingStore()
    task = asyncio.create_task(_elector(store).run(_forever))
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        while not store.given_up:
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert FAST.call_timeout <= store.given_up[0] - started < FAST.call_timeout + 0.5


async def test_work_that_ends_releases_the_lease_and_passes_on_its_error() -> None:
    store = MemoryStore()
    elector = _elector(store)

    async def failing() -> None:
        raise RuntimeError("work failed")

    with pytest.raises(RuntimeError, match="work failed"):
        await elector.run(failing)
    assert store.lease is not None
    assert store.lease["spec"]["holderIdentity"] == ""
    assert store.lease["spec"]["leaseDurationSeconds"] == 1
    assert not elector.is_leader


async def test_the_holder_announces_itself_on_the_lease_and_withdraws_on_release() -> None:
    store = MemoryStore()
    address = {"troupe.dev/holder-address": "http://10.0.0.7:8080"}
    elector = LeaderElector(store, "me", FAST, registry=CollectorRegistry(), announce=address)
    task = asyncio.create_task(elector.run(_forever))
    try:
        while not elector.is_leader:
            await asyncio.sleep(0.01)
        assert store.lease is not None
        assert store.lease["metadata"]["annotations"] == address
        assert elector.holder_annotations == address
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert store.lease["metadata"]["annotations"] == {}
    assert elector.holder_annotations == {}


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, (15, 10.0, 2.0)),
        (
            {
                "TROUPE_LEASE_DURATION_SECONDS": "4",
                "TROUPE_RENEW_DEADLINE_SECONDS": "2",
                "TROUPE_RETRY_PERIOD_SECONDS": "0.5",
            },
            (4, 2.0, 0.5),
        ),
    ],
)
def test_timings_come_from_the_environment(
    environ: dict[str, str], expected: tuple[int, float, float]
) -> None:
    config = election_config_from_env(environ)
    assert (config.lease_duration, config.renew_deadline, config.retry_period) == expected


@pytest.mark.parametrize(
    "environ",
    [{"TROUPE_LEASE_DURATION_SECONDS": "1.5"}, {"TROUPE_RETRY_PERIOD_SECONDS": "20"}],
)
def test_timings_that_make_no_sense_are_refused_naming_the_variables(
    environ: dict[str, str],
) -> None:
    with pytest.raises(ValueError, match="TROUPE_LEASE_DURATION_SECONDS"):
        election_config_from_env(environ)
