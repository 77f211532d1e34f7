"""The operator's election Events: one per transition on the Lease, never waited for long."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from troupe_operator.election import Change, Transition
from troupe_operator.leadership import LeaseEvents

STARTED = Transition(Change.STARTED_LEADING, "op-a_1", 1, "op-a_1 became leader")
LOST = Transition(
    Change.STOPPED_LEADING, "op-b_2", 2, "op-a_1 lost the Lease: op-b_2 holds the Lease", lost=True
)


class LeaseApi:
    """The Lease store's Event calls: creates are kept, or hang when asked to."""

    namespace = "ops"
    name = "troupe-operator"

    def __init__(self, timeout_seconds: float = 5.0, hang: bool = False) -> None:
        self.timeout_seconds = timeout_seconds
        self.hang = hang
        self.created: list[dict[str, Any]] = []

    async def create_event(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        if self.hang:
            await asyncio.Event().wait()
        self.created.append(body)
        return body


async def test_each_transition_is_an_event_on_the_lease_and_a_lost_one_a_warning() -> None:
    api = LeaseApi()
    events = LeaseEvents(api, "op-a_1")  # type: ignore[arg-type]
    events.observe(STARTED)
    events.observe(LOST)
    await events.drain()
    started, lost = api.created
    assert [(e["type"], e["reason"]) for e in api.created] == [
        ("Normal", "StartedLeading"),
        ("Warning", "StoppedLeading"),
    ]
    assert lost["message"] == "op-a_1 lost the Lease: op-b_2 holds the Lease"
    assert lost["metadata"]["namespace"] == "ops"
    assert lost["involvedObject"] == {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "namespace": "ops",
        "name": "troupe-operator",
    }
    assert lost["source"] == {"component": "troupe-operator"}
    assert (lost["reportingComponent"], lost["reportingInstance"]) == ("troupe-operator", "op-a_1")
    assert started["metadata"]["name"] != lost["metadata"]["name"]


async def test_a_post_that_gets_no_answer_is_given_up_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    events = LeaseEvents(LeaseApi(timeout_seconds=0.05, hang=True), "op-a_1")  # type: ignore[arg-type]
    events.observe(STARTED)
    async with asyncio.timeout(5):
        await events.drain()
    assert "could not post Event StartedLeading on the Lease within 0.05s" in caplog.text
