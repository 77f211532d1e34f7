"""Faults aimed at one client: Status errors, delays, cut watches, ERROR events, lost events."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import kmock
import kopf
import pytest
from kubernetes.client import ApiClient, CustomObjectsApi

from tests.support.emulator import EmulatedCluster
from tests.support.fixtures import RunOperator
from tests.support.kube.faults import Target
from tests.support.samples import WIDGET_CRD, WIDGETS, widget
from tests.support.waiting import wait_for

OPERATOR = "troupe-operator/0.1"
CONFIGMAPS = "/api/v1/namespaces/default/configmaps"


@pytest.fixture
def operator_http(emulator: EmulatedCluster) -> Iterator[httpx.Client]:
    """A raw HTTP client that names itself as the operator under test."""
    with httpx.Client(base_url=emulator.url, headers={"User-Agent": OPERATOR}) as client:
        yield client


@pytest.fixture
def other_http(emulator: EmulatedCluster) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emulator.url) as client:
        yield client


def _config_map(name: str, **metadata: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, **metadata}, "data": {"k": "v"}}


def _events(client: httpx.Client, path: str, **query: str) -> list[dict[str, Any]]:
    """The events of one watch stream, read until the server ends it."""
    params = {"watch": "true", **query}
    with client.stream("GET", path, params=params, timeout=30) as response:
        return [json.loads(line) for line in response.iter_lines() if line.strip()]


@pytest.mark.parametrize(
    ("status", "reason", "retry_after"),
    [(500, "InternalError", None), (503, "ServiceUnavailable", None), (429, "TooManyRequests", 2)],
)
def test_fail_answers_the_named_client_with_a_status(
    emulator: EmulatedCluster,
    operator_http: httpx.Client,
    other_http: httpx.Client,
    status: int,
    reason: str,
    retry_after: int | None,
) -> None:
    fault = emulator.faults.fail(
        Target("troupe-operator", verbs={"list"}, resource="configmaps"),
        status,
        retry_after=retry_after,
        count=1,
    )
    assert other_http.get(CONFIGMAPS).status_code == 200, "other clients are never hit"
    failed = operator_http.get(CONFIGMAPS)
    body = failed.json()
    assert (failed.status_code, body["kind"], body["code"], body["reason"]) == (
        status,
        "Status",
        status,
        reason,
    )
    if retry_after is not None:
        assert failed.headers["Retry-After"] == str(retry_after)
        assert body["details"]["retryAfterSeconds"] == retry_after
    assert operator_http.get(CONFIGMAPS).status_code == 200, "count=1: the next one is served"
    assert operator_http.post(CONFIGMAPS, json=_config_map("x")).status_code == 201
    assert fault.injected == 1
    assert emulator.faults.injected == {"fail": 1}
    emulator.faults.clear()
    assert emulator.faults.injected == {"fail": 1}, "counters survive clear()"


def test_fractions_replay_with_the_same_seed() -> None:
    def outcomes(seed: int) -> list[int]:
        with (
            EmulatedCluster(fault_seed=seed) as cluster,
            httpx.Client(base_url=cluster.url, headers={"User-Agent": OPERATOR}) as client,
        ):
            cluster.faults.fail(Target("troupe-operator"), 503, fraction=0.3)
            return [client.get("/api/v1/namespaces").status_code for _ in range(40)]

    first, again, other = outcomes(7), outcomes(7), outcomes(8)
    assert first == again
    assert first != other
    assert 3 <= first.count(503) <= 25


def test_delay_holds_requests_then_serves_or_fails_them(
    emulator: EmulatedCluster, operator_http: httpx.Client
) -> None:
    emulator.faults.delay(Target("troupe-operator", verbs={"list"}), 0.5, count=1)
    emulator.faults.delay(Target("troupe-operator", verbs={"get"}), 0.5, then_fail=504)
    started = time.monotonic()
    assert operator_http.get(CONFIGMAPS).status_code == 200
    assert time.monotonic() - started >= 0.5
    started = time.monotonic()
    assert operator_http.get(f"{CONFIGMAPS}/x").status_code == 504
    assert time.monotonic() - started >= 0.5
    with pytest.raises(httpx.ReadTimeout):
        operator_http.get(f"{CONFIGMAPS}/x", timeout=0.1)
    assert emulator.faults.injected["delay"] >= 2


def test_kmock_reactions_go_in_front_and_see_kubernetes_urls(
    emulator: EmulatedCluster, other_http: httpx.Client
) -> None:
    emulator.handler[kmock.method.GET, kmock.resource("v1/namespaces"), kmock.name("default")] << (
        418
    )
    assert other_http.get("/api/v1/namespaces/default").status_code == 418
    assert other_http.get("/api/v1/namespaces").status_code == 200
    assert other_http.get(f"{CONFIGMAPS}/missing").status_code == 404
    assert emulator.handler.errors == [], "API answers are not harness errors"


def test_cut_watches_end_the_streams_of_the_named_client(
    emulator: EmulatedCluster, operator_http: httpx.Client, other_http: httpx.Client
) -> None:
    fault = emulator.faults.cut_watches(Target("troupe-operator", verbs={"watch"}), every=0.3)
    started = time.monotonic()
    assert _events(operator_http, CONFIGMAPS, timeoutSeconds="60") == []
    assert time.monotonic() - started < 30
    assert _events(other_http, CONFIGMAPS, timeoutSeconds="1") == []
    assert fault.injected == 1


def test_watch_error_sends_one_error_event_and_ends_the_stream(
    emulator: EmulatedCluster, operator_http: httpx.Client
) -> None:
    operator_http.post(CONFIGMAPS, json=_config_map("a"))
    emulator.faults.watch_error(Target("troupe-operator", resource="configmaps"))
    events = _events(operator_http, CONFIGMAPS, timeoutSeconds="60")
    assert [event["type"] for event in events] == ["ADDED", "ERROR"]
    assert events[1]["object"]["code"] == 500
    assert [e["type"] for e in _events(operator_http, CONFIGMAPS, timeoutSeconds="1")] == [
        "ADDED"
    ], "only the next stream"


def test_drop_event_loses_one_event_for_the_named_client_only(
    emulator: EmulatedCluster, operator_http: httpx.Client, other_http: httpx.Client
) -> None:
    emulator.faults.drop_event(
        Target("troupe-operator", verbs={"watch"}),
        lambda kind, obj: kind == "MODIFIED" and obj["metadata"].get("labels") == {"done": "yes"},
    )
    since = other_http.get(CONFIGMAPS).json()["metadata"]["resourceVersion"]
    other_http.post(CONFIGMAPS, json=_config_map("a"))
    for patch in ({"metadata": {"labels": {"done": "yes"}}}, {"data": {"k": "w"}}):
        headers = {"Content-Type": "application/merge-patch+json"}
        other_http.patch(f"{CONFIGMAPS}/a", content=json.dumps(patch), headers=headers)

    def seen(client: httpx.Client) -> list[tuple[str, str]]:
        events = _events(client, CONFIGMAPS, resourceVersion=since, timeoutSeconds="1")
        return [(e["type"], e["object"]["data"]["k"]) for e in events if e["type"] != "BOOKMARK"]

    assert seen(operator_http) == [("ADDED", "v"), ("MODIFIED", "w")]
    assert seen(other_http) == [("ADDED", "v"), ("MODIFIED", "v"), ("MODIFIED", "w")]
    assert operator_http.get(f"{CONFIGMAPS}/a").json()["metadata"]["labels"] == {"done": "yes"}


def test_kopf_keeps_handling_while_its_watches_are_cut(
    emulator: EmulatedCluster, kube_api: ApiClient, run_operator: RunOperator
) -> None:
    emulator.load_crds(WIDGET_CRD)
    registry = kopf.OperatorRegistry()

    @kopf.on.create(*WIDGETS, registry=registry)
    def seen(patch: kopf.Patch, **_: Any) -> None:
        patch.status["phase"] = "Seen"

    emulator.faults.cut_watches(Target("kopf", verbs={"watch"}), every=0.3)
    widgets = CustomObjectsApi(kube_api)

    def phase(name: str) -> str | None:
        obj = widgets.get_namespaced_custom_object(*WIDGETS[:2], "default", WIDGETS[2], name)
        return (obj.get("status") or {}).get("phase")

    with run_operator(registry, namespaces=["default"]):
        wait_for(lambda: emulator.faults.injected["watch-cut"] >= 3, what="watches cut")
        for name in ("one", "two"):
            body = widget(name)
            widgets.create_namespaced_custom_object(*WIDGETS[:2], "default", WIDGETS[2], body)
            wait_for(lambda name=name: phase(name), timeout=30, what=f"kopf to handle {name}")
