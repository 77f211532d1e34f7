"""Serve mode over a real loopback socket (uvicorn in a thread) against the OpenAI stub:
invoke, health, readiness, metrics (checked by promtool where installed), model failures
mapped to 502/503/504, in-flight requests finishing on shutdown, and no key anywhere."""

from __future__ import annotations

import logging
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.integration.agent_server import RunningServer, serving
from tests.support.openai_stub import Fault, OpenAIStub
from troupe_agent.agent import Agent, AgentOptions
from troupe_agent.logs import OneLineScrubbingFormatter
from troupe_agent.metrics import ServeMetrics
from troupe_agent.serve import create_app
from troupe_operator.api import AgentSpec

CANARY_KEY = "tr-serve-canary-91d0c4aa7e"


@pytest.fixture
def serve(openai_stub: OpenAIStub) -> Iterator[RunningServer]:
    spec = AgentSpec.model_validate(
        {
            "role": "researcher",
            "model": {"name": "stub-model", "baseURL": openai_stub.base_url, "timeoutSeconds": 1},
        }
    )

    def build_agent(metrics: ServeMetrics) -> Agent:
        options = AgentOptions(observers=[metrics], sleep=lambda seconds: None)
        return Agent("researcher-1", spec, CANARY_KEY, options)

    with serving(create_app(build_agent, auth=None)) as running:
        yield running


def test_invoke_health_readiness_and_metrics_over_http(
    serve: RunningServer, openai_stub: OpenAIStub
) -> None:
    assert httpx.get(f"{serve.url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{serve.url}/readyz").json() == {"status": "ready"}
    response = httpx.post(
        f"{serve.url}/v1/invoke", json={"prompt": "Find facts", "context": {"brief": "x"}}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["output"].startswith("stub reply to:")
    assert (body["model"], body["scripted"]) == ("stub-model", False)
    assert body["usage"]["inputTokens"] > 0 and body["usage"]["outputTokens"] > 0
    metrics = httpx.get(f"{serve.url}/metrics").text
    input_tokens = body["usage"]["inputTokens"]
    assert (
        f'troupe_llm_tokens_total{{direction="input",model="stub-model"}} {input_tokens}.0'
        in metrics
    )
    assert 'troupe_agent_requests_total{code="200",route="/v1/invoke"} 1.0' in metrics


@pytest.mark.parametrize(
    ("faults", "status"),
    [
        ([Fault.unauthorized()], 502),
        ([Fault.server_error()] * 4, 503),
        ([Fault.rate_limited(retry_after=0)] * 4, 503),
        ([Fault.slow(3)] * 4, 504),
    ],
)
def test_model_failures_map_to_gateway_statuses(
    serve: RunningServer, openai_stub: OpenAIStub, faults: list[Fault], status: int
) -> None:
    openai_stub.inject(*faults)
    response = httpx.post(f"{serve.url}/v1/invoke", json={"prompt": "x"}, timeout=30)
    assert response.status_code == status
    error = response.json()["error"]
    assert error.startswith('agent "researcher-1": model "stub-model" failed')
    assert "\n" not in error


def test_metrics_pass_promtool(serve: RunningServer, openai_stub: OpenAIStub) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package `prometheus` provides it)")
    openai_stub.inject(Fault.server_error())
    httpx.post(f"{serve.url}/v1/invoke", json={"prompt": "x"})
    httpx.post(f"{serve.url}/v1/invoke", content=b"{")
    exposition = httpx.get(f"{serve.url}/metrics").content
    assert b'troupe_llm_errors_total{model="stub-model",status="500"} 1.0' in exposition
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=exposition, capture_output=True, timeout=30
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_in_flight_requests_finish_on_shutdown(
    serve: RunningServer, openai_stub: OpenAIStub
) -> None:
    openai_stub.inject(Fault.slow(0.8))
    responses: list[httpx.Response] = []
    request = threading.Thread(
        target=lambda: responses.append(
            httpx.post(f"{serve.url}/v1/invoke", json={"prompt": "slow"}, timeout=10)
        )
    )
    request.start()
    deadline = time.monotonic() + 5
    while not openai_stub.chat_requests:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    serve.stop()  # what uvicorn does on SIGTERM
    request.join(10)
    assert [r.status_code for r in responses] == [200]


def test_the_key_appears_in_no_response_log_line_or_metric(
    serve: RunningServer, openai_stub: OpenAIStub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    echo = Fault(401, {"message": f"Incorrect API key provided: {CANARY_KEY}", "code": None})
    openai_stub.inject(Fault.server_error(), echo)
    bodies = [
        httpx.post(f"{serve.url}/v1/invoke", json={"prompt": "x"}).text,
        httpx.post(f"{serve.url}/v1/invoke", json={"prompt": "y"}).text,
        httpx.get(f"{serve.url}/metrics").text,
    ]
    formatter = OneLineScrubbingFormatter()
    log_lines = [formatter.format(record) for record in caplog.records]
    assert any("retry" in line for line in log_lines)
    assert "[REDACTED]" in bodies[0] + bodies[1]
    for text in bodies + log_lines:
        assert CANARY_KEY not in text
