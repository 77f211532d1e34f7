"""The operator's spans: derived identities, TRACEPARENT for task pods, spans built from status.

A run's spans are built from the status transitions a reconcile writes; these
tests hand the tracer those transitions directly (statuses built by hand) and
read the spans back from an in-memory exporter.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, Sampler
from opentelemetry.trace import SpanKind, StatusCode

from troupe_operator.api import (
    AgentSpec,
    Condition,
    ConditionStatus,
    TaskReport,
    TaskResult,
    TaskStatus,
    TokenUsage,
    WorkflowSpec,
    WorkflowStatus,
)
from troupe_operator.controller import children
from troupe_operator.controller.config import ConfigError, OperatorConfig
from troupe_operator.controller.tracing import (
    TRACEPARENT,
    RunTracer,
    span_id_of,
    trace_id_of,
)
from troupe_operator.workflow import JobState, Observation, ObservedJob, WorkflowRef
from troupe_operator.workflow.launch import create_task
from troupe_operator.workflow.units import Unit

UID = "6f1c0e4a-9d3b-4c1e-8a57-2b9f0d7e3c11"
RUN = WorkflowRef("team", "brief", UID)
T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
SPEC = WorkflowSpec.model_validate({"tasks": [{"name": "research", "agent": "r", "prompt": "p"}]})
USAGE = TokenUsage(input_tokens=7, output_tokens=3, total_tokens=10)
SECRET_TEXT = "PROMPT-OR-OUTPUT-TEXT"
"""Task data the status holds (message, preview): never to be seen in a span."""


def tracer(sampler: Sampler = ALWAYS_ON) -> tuple[RunTracer, InMemorySpanExporter]:
    spans = InMemorySpanExporter()

    def provider(ids: IdGenerator) -> TracerProvider:
        made = TracerProvider(sampler=sampler, id_generator=ids)
        made.add_span_processor(SimpleSpanProcessor(spans))
        return made

    return RunTracer(provider, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}), spans


def task(phase: str, attempts: int, **fields: Any) -> TaskStatus:
    return TaskStatus.model_validate(
        {"phase": phase, "attempts": attempts, "message": SECRET_TEXT, **fields}
    )


def status(phase: str, tasks: dict[str, TaskStatus], **fields: Any) -> WorkflowStatus:
    return WorkflowStatus.model_validate({"phase": phase, "tasks": tasks, **fields})


def job(attempt: int, state: JobState, **fields: Any) -> ObservedJob:
    times = {"started_at": T0 + timedelta(seconds=2), "finished_at": T0 + timedelta(seconds=9)}
    return ObservedJob(
        RUN.job_name("research", attempt), "research", attempt, state, **{**times, **fields}
    )


def settle(
    run_tracer: RunTracer,
    before: WorkflowStatus,
    after: WorkflowStatus,
    *jobs: ObservedJob,
) -> None:
    observation = Observation(
        RUN.namespace, RUN.name, RUN.uid, 1, SPEC, before, T0 + timedelta(seconds=10), jobs
    )
    run_tracer.settled(RUN, T0, observation, after, {"research": "researcher"})


def by_name(spans: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    return {span.name: span for span in spans.get_finished_spans()}


def test_a_runs_trace_is_its_workflows_uid_and_every_id_is_derived_and_stable() -> None:
    assert format(trace_id_of(UID), "032x") == uuid.UUID(UID).hex
    assert trace_id_of("uid-1") == trace_id_of("uid-1") != 0  # not a UUID: hashed
    ids = {
        span_id_of(UID),
        span_id_of(UID, "a", 1),
        span_id_of(UID, "a", 2),
        span_id_of(UID, "b", 1),
    }
    assert len(ids) == 4 and 0 not in ids
    assert span_id_of(UID, "a", 1) == span_id_of(UID, "a", 1)


def test_task_pods_get_the_attempts_traceparent_and_the_export_settings_only() -> None:
    run_tracer, _ = tracer()
    env = run_tracer.task_environment(RUN, "research", 2)
    assert env[TRACEPARENT] == f"00-{uuid.UUID(UID).hex}-{span_id_of(UID, 'research', 2):016x}-01"
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://collector:4318"
    unsampled, _ = tracer(ALWAYS_OFF)
    assert unsampled.task_environment(RUN, "research", 2)[TRACEPARENT].endswith("-00")
    assert RunTracer().task_environment(RUN, "research", 2) == {}  # off: the Job is unchanged


def test_a_task_job_carries_its_attempts_trace_environment() -> None:
    run_tracer, _ = tracer()
    action = create_task(RUN, Unit(SPEC.tasks[0].name, SPEC.tasks[0]), 1, AgentSpec())
    job = children.task_job(
        RUN, action, OperatorConfig(), run_tracer.task_environment(RUN, "research", 1)
    )
    [container] = job["spec"]["template"]["spec"]["containers"]
    env = {variable["name"]: variable.get("value") for variable in container["env"]}
    assert env[TRACEPARENT].split("-")[2] == f"{span_id_of(UID, 'research', 1):016x}"
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://collector:4318"


@pytest.mark.parametrize(
    ("environ", "traces"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}, False),
    ],
)
def test_the_operator_traces_only_when_the_otel_variables_ask(
    environ: dict[str, str], traces: bool
) -> None:
    run_tracer = RunTracer.from_env(environ)
    assert (TRACEPARENT in run_tracer.task_environment(RUN, "research", 1)) == traces
    run_tracer.shutdown()


@pytest.mark.parametrize(
    "environ",
    [
        {"OTEL_TRACES_EXPORTER": "zipkin"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
    ],
)
def test_settings_that_cannot_be_honoured_stop_the_operator_naming_them(
    environ: dict[str, str],
) -> None:
    with pytest.raises(ConfigError, match="OTEL_"):
        RunTracer.from_env(environ)


def test_an_attempt_and_the_run_are_spans_of_one_trace_once_status_records_their_end() -> None:
    run_tracer, spans = tracer()
    running = status("Running", {"research": task("Running", 1)})
    report = TaskReport(succeeded=True, result=TaskResult(model="m", usage=USAGE))
    done = status(
        "Succeeded",
        {"research": task("Succeeded", 1, preview=SECRET_TEXT)},
        finished_at=T0 + timedelta(seconds=10),
        usage=USAGE,
        message=SECRET_TEXT,
    )
    settle(run_tracer, running, done, job(1, JobState.SUCCEEDED, report=report))
    settle(run_tracer, done, done)  # a replayed reconcile: nothing new
    found = by_name(spans)
    assert set(found) == {"invoke_workflow", "task research"}
    root, attempt = found["invoke_workflow"], found["task research"]
    assert root.parent is None and root.kind == SpanKind.INTERNAL
    assert root.context is not None and attempt.context is not None
    assert root.context.trace_id == attempt.context.trace_id == trace_id_of(UID)
    assert root.context.span_id == span_id_of(UID)
    assert attempt.parent is not None and attempt.parent.span_id == span_id_of(UID)
    assert attempt.context.span_id == span_id_of(UID, "research", 1)
    assert attempt.kind == SpanKind.CLIENT
    assert dict(root.attributes or {}) == {
        "gen_ai.operation.name": "invoke_workflow",
        "k8s.namespace.name": "team",
        "troupe.workflow.name": "brief",
        "troupe.workflow.uid": UID,
        "troupe.workflow.phase": "Succeeded",
        "troupe.workflow.tasks": 1,
        "gen_ai.usage.input_tokens": 7,
        "gen_ai.usage.output_tokens": 3,
    }
    assert dict(attempt.attributes or {}) == {
        "k8s.namespace.name": "team",
        "k8s.job.name": RUN.job_name("research", 1),
        "troupe.task.name": "research",
        "troupe.task.attempt": 1,
        "troupe.task.phase": "Succeeded",
        "gen_ai.agent.name": "researcher",
        "gen_ai.usage.input_tokens": 7,
        "gen_ai.usage.output_tokens": 3,
    }
    assert (root.start_time, root.end_time) == (nanoseconds(T0), nanoseconds(T0, 10))
    assert (attempt.start_time, attempt.end_time) == (nanoseconds(T0, 2), nanoseconds(T0, 9))
    assert_no_task_data(spans)


@pytest.mark.parametrize(
    ("after", "observed", "phase", "error"),
    [
        (task("Running", 2), job(1, JobState.FAILED), "Failed", "TaskFailed"),
        (
            task("Retrying", 1),
            job(1, JobState.FAILED, deadline_exceeded=True),
            "Failed",
            "DeadlineExceeded",
        ),
        (task("Failed", 1), job(1, JobState.FAILED, permanent=True), "Failed", "PermanentFailure"),
        (task("Failed", 1), job(1, JobState.GONE, started_at=None), "Failed", "JobDeleted"),
        (task("Cancelled", 1), job(1, JobState.ACTIVE), "Cancelled", None),
    ],
)
def test_an_attempt_that_did_not_succeed_says_how_with_a_bounded_reason(
    after: TaskStatus, observed: ObservedJob, phase: str, error: str | None
) -> None:
    run_tracer, spans = tracer()
    settle(
        run_tracer,
        status("Running", {"research": task("Running", 1, started_at=T0)}),
        status("Running", {"research": after}),
        observed,
    )
    [span] = spans.get_finished_spans()
    assert span.attributes is not None
    assert span.attributes["troupe.task.phase"] == phase
    assert span.attributes.get("error.type") == error
    assert span.status.status_code == (StatusCode.ERROR if error else StatusCode.UNSET)
    assert span.start_time is not None and span.start_time >= nanoseconds(T0)
    assert_no_task_data(spans)


def test_a_failed_run_names_its_reason_and_a_running_attempt_makes_no_span() -> None:
    run_tracer, spans = tracer()
    failed = Condition(
        type="Failed", status=ConditionStatus.TRUE, reason="Timeout", message=SECRET_TEXT
    )
    settle(
        run_tracer,
        status("Running", {"research": task("Running", 1)}),
        status("Failed", {"research": task("Running", 1)}, conditions=[failed]),
    )
    [root] = spans.get_finished_spans()
    assert root.name == "invoke_workflow"
    assert root.attributes is not None and root.attributes["error.type"] == "Timeout"
    assert root.status.status_code == StatusCode.ERROR and not root.status.description
    assert_no_task_data(spans)


class Broken(SpanProcessor):
    def on_end(self, span: ReadableSpan) -> None:
        raise RuntimeError("exporter bug")


def test_a_span_that_cannot_be_exported_never_fails_the_reconcile(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def provider(ids: IdGenerator) -> TracerProvider:
        made = TracerProvider(id_generator=ids)
        made.add_span_processor(Broken())
        return made

    running = status("Running", {"research": task("Running", 1)})
    settle(RunTracer(provider), running, status("Succeeded", {"research": task("Succeeded", 1)}))
    assert "spans of team/brief not exported" in caplog.text


def test_off_it_builds_nothing() -> None:
    off = RunTracer()
    running = status("Running", {"research": task("Running", 1)})
    settle(off, running, status("Succeeded", {"research": task("Succeeded", 1)}))
    off.shutdown()


def nanoseconds(moment: datetime, seconds: int = 0) -> int:
    return int((moment + timedelta(seconds=seconds)).timestamp()) * 1_000_000_000


def assert_no_task_data(spans: InMemorySpanExporter) -> None:
    for span in spans.get_finished_spans():
        texts = [str(v) for v in (span.attributes or {}).values()]
        assert not any(SECRET_TEXT in text for text in [*texts, span.status.description or ""])
