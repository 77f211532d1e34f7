"""Events are named by what they say: a repeat is counted on the same object, never copied."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prometheus_client import REGISTRY

from troupe_operator.controller.events import EventRecorder, event_name
from troupe_operator.controller.kube import ApiError
from troupe_operator.workflow import Event, EventType

WORKFLOW = {"metadata": {"name": "wf", "namespace": "team", "uid": "uid-1"}}
SUCCEEDED = Event(EventType.NORMAL, "TaskSucceeded", "task 'a' succeeded on attempt 1")


class Events:
    """Just enough of the API for Events: create answers None (AlreadyExists) for a known name."""

    def __init__(self, fail: bool = False) -> None:
        self.stored: dict[str, dict[str, Any]] = {}
        self.fail = fail

    async def create_event(self, namespace: str, body: dict[str, Any]) -> dict[str, Any] | None:
        if self.fail:
            raise ApiError(503, "ServiceUnavailable", "try later")
        name = body["metadata"]["name"]
        if name in self.stored:
            return None
        self.stored[name] = body
        return body

    async def read_event(self, namespace: str, name: str) -> dict[str, Any]:
        return self.stored[name]

    async def patch_event(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        self.stored[name].update(patch)
        return self.stored[name]


def recorder(api: Events) -> EventRecorder:
    return EventRecorder(api, "operator-0", lambda: datetime(2026, 1, 1, tzinfo=UTC))  # type: ignore[arg-type]


async def test_a_repeated_event_is_counted_on_one_object() -> None:
    api = Events()
    events = recorder(api)
    for _ in range(3):
        await events.post(WORKFLOW, SUCCEEDED)
    [posted] = api.stored.values()
    assert posted["count"] == 3
    assert posted["reportingComponent"] == "troupe.dev/operator"
    assert posted["reportingInstance"] == "operator-0"
    assert posted["involvedObject"]["uid"] == "uid-1"


async def test_a_repeat_after_a_restart_reads_the_count_back() -> None:
    api = Events()
    await recorder(api).post(WORKFLOW, SUCCEEDED)
    await recorder(api).post(WORKFLOW, SUCCEEDED)
    assert api.stored[event_name(WORKFLOW, SUCCEEDED)]["count"] == 2


async def test_different_events_are_different_objects_and_a_failed_post_is_survived() -> None:
    api = Events()
    events = recorder(api)
    await events.post(WORKFLOW, SUCCEEDED)
    await events.post(WORKFLOW, Event(EventType.WARNING, "TaskFailed", "task 'a' failed"))
    assert len(api.stored) == 2
    lost = REGISTRY.get_sample_value("troupe_events_lost_total") or 0.0
    await recorder(Events(fail=True)).post(WORKFLOW, SUCCEEDED)  # logged and counted, not raised
    assert REGISTRY.get_sample_value("troupe_events_lost_total") == lost + 1
