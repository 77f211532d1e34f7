"""Serve mode as an ASGI app (Starlette's TestClient runs the lifespan): routes, readiness,
bad bodies, error mapping and the Prometheus exposition."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from troupe_agent.__main__ import build_parser
from troupe_agent.agent import Agent, AgentOptions
from troupe_agent.errors import CallFailure
from troupe_agent.invoke_auth import DEFAULT_AUDIENCE
from troupe_agent.metrics import ServeMetrics
from troupe_agent.scripted import PLACEHOLDER_BANNER
from troupe_agent.serve import (
    ServeConfigError,
    create_app,
    http_status_for,
    load_agent_spec,
)
from troupe_operator.api import SCRIPTED_MODEL_NAME, AgentSpec, Role
from troupe_operator.api.serve_env import SPEC_ENV

SPEC = AgentSpec.model_validate({"role": "planner"})


def scripted_agent(metrics: ServeMetrics) -> Agent:
    return Agent("planner-1", SPEC, None, AgentOptions(observers=[metrics]))


def wait_ready(client: TestClient) -> None:
    deadline = time.monotonic() + 10
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, "agent never became ready"
        time.sleep(0.01)


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(create_app(scripted_agent, auth=None)) as test_client:
        wait_ready(test_client)
        yield test_client


def test_invoke_returns_output_model_scripted_flag_and_usage(client: TestClient) -> None:
    response = client.post("/v1/invoke", json={"prompt": "Plan a launch", "context": {"n": 3}})
    assert response.status_code == 200
    body = response.json()
    assert body["output"].startswith(PLACEHOLDER_BANNER)
    assert body["model"] == SCRIPTED_MODEL_NAME
    assert body["scripted"] is True
    assert body["usage"] == {"inputTokens": 0, "outputTokens": 0, "totalTokens": 0}


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"prompt": ""}',
        b'{"prompt": 3}',
        b'{"prompt": "x", "context": []}',
        b'{"prompt": "x", "extra": 1}',
    ],
)
def test_bad_bodies_are_400_with_one_line(client: TestClient, body: bytes) -> None:
    response = client.post("/v1/invoke", content=body)
    assert response.status_code == 400
    assert response.json()["error"].startswith("bad request:")


def test_health_and_metrics(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    client.post("/v1/invoke", json={"prompt": "x"})
    client.get("/nowhere")
    metrics = client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = metrics.text
    assert 'troupe_agent_requests_total{code="200",route="/v1/invoke"} 1.0' in text
    assert 'troupe_agent_requests_total{code="404",route="other"} 1.0' in text
    assert "troupe_agent_request_duration_seconds_bucket" in text
    assert "/nowhere" not in text


def test_not_ready_until_the_graph_is_built() -> None:
    release = threading.Event()

    def slow_agent(metrics: ServeMetrics) -> Agent:
        assert release.wait(10)
        return scripted_agent(metrics)

    with TestClient(create_app(slow_agent, auth=None)) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 503
        assert client.post("/v1/invoke", json={"prompt": "x"}).status_code == 503
        release.set()
        wait_ready(client)


def test_a_failed_build_stays_unready_with_the_reason() -> None:
    def broken(metrics: ServeMetrics) -> Agent:
        raise RuntimeError("no graph today")

    with TestClient(create_app(broken, auth=None)) as client:
        deadline = time.monotonic() + 10
        while client.get("/readyz").json().get("reason") is None:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert "no graph today" in client.get("/readyz").json()["reason"]


@pytest.mark.parametrize(
    ("status", "retryable", "code"),
    [
        ("timeout", True, 504),
        ("deadline", True, 504),
        ("429", True, 503),
        ("500", True, 503),
        ("connection", True, 503),
        ("401", False, 502),
        ("400", False, 502),
    ],
)
def test_model_failures_map_to_gateway_statuses(status: str, retryable: bool, code: int) -> None:
    assert http_status_for(CallFailure(status=status, detail="", retryable=retryable)) == code


def test_agent_spec_from_file_or_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "agent.json"
    path.write_text('{"role": "reviewer"}')
    assert load_agent_spec(path).role is Role.REVIEWER
    monkeypatch.setenv(SPEC_ENV, '{"role": "executor"}')
    assert load_agent_spec(None).role is Role.EXECUTOR
    monkeypatch.setenv(SPEC_ENV, '{"role": "juggler"}')
    with pytest.raises(ServeConfigError, match=SPEC_ENV):
        load_agent_spec(None)
    monkeypatch.delenv(SPEC_ENV)
    with pytest.raises(ServeConfigError, match="--agent"):
        load_agent_spec(None)


def test_authentication_is_on_unless_switched_off() -> None:
    served = build_parser().parse_args(["serve"])
    assert (served.insecure_no_auth, served.token_audience) == (False, DEFAULT_AUDIENCE)
    insecure = build_parser().parse_args(["serve", "--insecure-no-auth", "--token-audience", ""])
    assert (insecure.insecure_no_auth, insecure.token_audience) == (True, "")
