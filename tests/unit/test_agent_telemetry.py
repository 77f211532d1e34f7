"""The agent runtime's spans and GenAI histograms, its trace context, and when it exports.

Spans and metrics go to in-memory SDK providers handed to ``GenAITelemetry``;
the model is the fake chat model of ``test_agent_graph`` or the offline scripted
one, members and callers are httpx mock transports and Starlette's TestClient.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from langchain_core.messages import HumanMessage
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.testclient import TestClient

from tests.unit.test_agent_graph import FakeChatModel, client_for, http_error, reply, spec
from tests.unit.test_agent_serve import SPEC, wait_ready
from troupe_agent import otel_setup
from troupe_agent.agent import Agent, AgentOptions, run_task
from troupe_agent.errors import CallFailure, ModelCallError
from troupe_agent.metrics import ServeMetrics
from troupe_agent.prompts import TaskPrompt
from troupe_agent.retry import Deadline
from troupe_agent.serve import create_app
from troupe_agent.team import MemberClient
from troupe_agent.telemetry import (
    GenAITelemetry,
    ModelTarget,
    inject_context,
    parent_context_from_headers,
)
from troupe_operator import otel_config, semconv
from troupe_operator.api import SCRIPTED_MODEL_NAME, TaskInput

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def telemetry(spans: InMemorySpanExporter, reader: InMemoryMetricReader) -> GenAITelemetry:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    return GenAITelemetry(provider, MeterProvider([reader]))


def histogram_points(reader: InMemoryMetricReader, name: str) -> list[HistogramDataPoint]:
    data = reader.get_metrics_data()
    assert data is not None
    return [
        point
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == name
        for point in metric.data.data_points
        if isinstance(point, HistogramDataPoint)
    ]


def trace_id(span: ReadableSpan) -> str:
    assert span.context is not None
    return format(span.context.trace_id, "032x")


def test_model_calls_are_chat_spans_and_histograms_as_the_conventions_name_them(
    telemetry: GenAITelemetry, spans: InMemorySpanExporter, reader: InMemoryMetricReader
) -> None:
    answer = reply("ok", 7, 3)
    answer.response_metadata = {"model_name": "test-model-0613", "finish_reason": "stop"}
    model = FakeChatModel(script=[http_error(503), answer])
    agent = spec()
    client_for(agent, model, telemetry=telemetry).chat([HumanMessage("hi")], Deadline(None))

    failed, ok = spans.get_finished_spans()
    assert (ok.name, ok.kind) == ("chat test-model", trace.SpanKind.CLIENT)
    assert dict(ok.attributes or {}) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "test-model",
        "server.address": "127.0.0.1",
        "server.port": 9,
        "gen_ai.request.temperature": agent.effective_temperature,
        "gen_ai.request.max_tokens": agent.effective_max_tokens,
        "gen_ai.usage.input_tokens": 7,
        "gen_ai.usage.output_tokens": 3,
        "gen_ai.response.model": "test-model-0613",
        "gen_ai.response.finish_reasons": ("stop",),
    }
    assert failed.attributes is not None and failed.attributes["error.type"] == "503"
    assert failed.status.status_code == trace.StatusCode.ERROR
    assert not failed.events  # no exception event: provider text could carry the key

    tokens = histogram_points(reader, "gen_ai.client.token.usage")
    assert {p.attributes["gen_ai.token.type"]: p.sum for p in tokens if p.attributes} == {
        "input": 7,
        "output": 3,
    }
    assert all(tuple(p.explicit_bounds) == semconv.TOKEN_USAGE_BUCKETS for p in tokens)
    durations = histogram_points(reader, "gen_ai.client.operation.duration")
    assert sorted(str((p.attributes or {}).get("error.type")) for p in durations) == [
        "503",
        "None",
    ]
    assert all(tuple(p.explicit_bounds) == semconv.OPERATION_DURATION_BUCKETS for p in durations)
    assert all((p.attributes or {})["gen_ai.provider.name"] == "openai" for p in durations)


def test_a_task_is_an_invoke_agent_span_in_the_trace_named_in_traceparent(
    monkeypatch: pytest.MonkeyPatch, telemetry: GenAITelemetry, spans: InMemorySpanExporter
) -> None:
    monkeypatch.setenv("TRACEPARENT", TRACEPARENT)
    task_input = TaskInput.model_validate(
        {"workflow": "wf", "namespace": "ns", "task": "t", "attempt": 1, "agentName": "a"}
        | {"agent": {}}
    )
    run_task(task_input, TaskPrompt("p"), None, Deadline(None), AgentOptions(telemetry=telemetry))
    chat, agent_span = spans.get_finished_spans()
    assert {trace_id(s) for s in (chat, agent_span)} == {TRACE_ID}
    assert agent_span.parent is not None and agent_span.parent.span_id == 0x00F067AA0BA902B7
    assert chat.parent is not None and agent_span.context is not None
    assert chat.parent.span_id == agent_span.context.span_id
    assert (agent_span.name, agent_span.kind) == ("invoke_agent a", trace.SpanKind.INTERNAL)
    assert dict(agent_span.attributes or {}) == {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.provider.name": "troupe-scripted",
        "gen_ai.request.model": SCRIPTED_MODEL_NAME,
        "gen_ai.agent.name": "a",
        "gen_ai.usage.input_tokens": 0,
        "gen_ai.usage.output_tokens": 0,
    }


def test_a_failed_run_says_how_it_failed_and_nothing_the_provider_said(
    telemetry: GenAITelemetry, spans: InMemorySpanExporter
) -> None:
    failure = CallFailure(status="429", detail="quota of key sk-live-123", retryable=True)
    with (
        pytest.raises(ModelCallError),
        telemetry.agent_span("a", ModelTarget("openai", "m")),
    ):
        raise ModelCallError(agent="a", model="m", failure=failure, attempts=1, reason="")
    [span] = spans.get_finished_spans()
    assert span.attributes is not None and span.attributes["error.type"] == "429"
    assert span.status.status_code == trace.StatusCode.ERROR and not span.status.description
    assert not span.events


def test_the_trace_context_goes_out_in_headers_and_comes_back_from_them(
    telemetry: GenAITelemetry, spans: InMemorySpanExporter
) -> None:
    assert parent_context_from_headers({"authorization": "Bearer t"}) is None
    with telemetry.agent_span("lead", ModelTarget("openai", "m")) as span:
        headers: dict[str, str] = {}
        inject_context(headers)
    context = parent_context_from_headers(headers)
    assert context is not None
    received = trace.get_current_span(context).get_span_context()
    sent = span.get_span_context()
    assert (received.trace_id, received.span_id) == (sent.trace_id, sent.span_id)


def test_a_team_asks_its_members_within_its_own_trace(
    telemetry: GenAITelemetry, spans: InMemorySpanExporter
) -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"output": "42"})

    members = MemberClient(
        {"math": "http://math"}, httpx.Client(transport=httpx.MockTransport(answer))
    )
    with telemetry.agent_span("lead", ModelTarget("openai", "m")) as span:
        members.ask("math", "6*7", "request", "Bearer t", Deadline(60))
    context = span.get_span_context()
    _, sent_trace, sent_parent, _flags = seen[0].headers["traceparent"].split("-")
    assert (sent_trace, sent_parent) == (f"{context.trace_id:032x}", f"{context.span_id:016x}")


@pytest.fixture
def served(telemetry: GenAITelemetry) -> Iterator[TestClient]:
    def build(metrics: ServeMetrics) -> Agent:
        return Agent("planner-1", SPEC, None, AgentOptions([metrics], telemetry))

    with TestClient(create_app(build, auth=None)) as client:
        wait_ready(client)
        yield client


def test_an_invocation_joins_the_callers_trace(
    served: TestClient, spans: InMemorySpanExporter
) -> None:
    response = served.post(
        "/v1/invoke", json={"prompt": "Plan"}, headers={"traceparent": TRACEPARENT}
    )
    assert response.status_code == 200
    assert {trace_id(span) for span in spans.get_finished_spans()} == {TRACE_ID}
    served.post("/v1/invoke", json={"prompt": "Plan"})  # no caller's trace: a trace of its own
    assert len({trace_id(span) for span in spans.get_finished_spans()}) == 2


@pytest.mark.parametrize(
    ("environ", "traces", "metrics"),
    [
        ({}, (), ()),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, ("otlp",), ("otlp",)),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, ("otlp",), ()),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_METRICS_EXPORTER": "none"},
            ("otlp",),
            (),
        ),
        ({"OTEL_TRACES_EXPORTER": "console, otlp"}, ("console", "otlp"), ()),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, (), ()),
    ],
)
def test_exporters_are_what_the_otel_variables_ask_and_none_by_default(
    environ: dict[str, str], traces: tuple[str, ...], metrics: tuple[str, ...]
) -> None:
    assert otel_config.exporters(otel_config.Signal.TRACES, environ) == traces
    assert otel_config.exporters(otel_config.Signal.METRICS, environ) == metrics


def test_pods_are_given_where_to_export_but_never_credentials_nor_the_operators_identity() -> None:
    operator: dict[str, Any] = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer secret",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "x-api-key=secret",
        "OTEL_EXPORTER_OTLP_CERTIFICATE": "/etc/otel/ca.pem",
        "OTEL_SERVICE_NAME": "troupe-operator",
        "OTEL_RESOURCE_ATTRIBUTES": "k8s.pod.name=troupe-operator-0",
        "OTEL_TRACES_SAMPLER": "always_on",
    }
    assert otel_config.child_environment(operator) == {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_TRACES_EXPORTER": "otlp",
    }


def test_settings_the_agent_cannot_honour_turn_its_telemetry_off_not_its_task(
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = trace.get_tracer_provider()
    with caplog.at_level(logging.ERROR):
        otel_setup.install({"OTEL_TRACES_EXPORTER": "jaeger"})
    assert "OpenTelemetry export is off: OTEL_TRACES_EXPORTER='jaeger'" in caplog.text
    assert trace.get_tracer_provider() is before
