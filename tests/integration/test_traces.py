"""One trace from the Workflow to every model call, as a real OTLP collector received it.

rotel's collector (``tests.support.otlp_receiver``) receives what the real
operator process exports (its ``OTEL_EXPORTER_OTLP_ENDPOINT``) and what the task
pods export: the real agent runtime, run by the Job runner with the environment
the operator put in their Jobs (``TRACEPARENT`` and the endpoint). The model is
the OpenAI stub. The operator is killed (SIGKILL) while the first task's model
call is held, and a second process finishes the run; the second task's first
model call fails, so it runs twice. The run must be one trace whose id is the
Workflow's uid, with one root span, every attempt's span a child of the root,
each task pod's ``invoke_agent`` span a child of its attempt's, each ``chat``
span a child of that; and the operator's spans carry no task data.
"""

from __future__ import annotations

import pathlib
import signal
import threading
import uuid
from typing import Any

from tests.integration.troupe_driver import Troupe, agent, reply_naming_the_task, workflow
from tests.support.openai_stub import Fault, OpenAIStub
from tests.support.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.support.waiting import wait_for

WAIT = 120.0
SCHEMA_URL = "https://opentelemetry.io/schemas/1.41.0"


def complete(receiver: OtlpReceiver, trace_id: str) -> list[ReceivedSpan] | None:
    """The run's spans once all ten are in: the run, three attempts, three runs, three calls."""
    spans = [span for span in receiver.spans() if span.trace_id == trace_id]
    names = sorted(span.name.split()[0] for span in spans)
    expected = ["chat"] * 3 + ["invoke_agent"] * 3 + ["invoke_workflow"] + ["task"] * 3
    return spans if names == expected else None


def test_a_run_is_one_trace_from_the_workflow_to_each_model_call_across_a_restart(
    troupe: Troupe, kubeconfig: pathlib.Path
) -> None:
    release = threading.Event()
    tasks: list[dict[str, Any]] = [
        {"name": "first"},
        {
            "name": "second",
            "retries": 1,
            "dependsOn": ["first"],
            "prompt": "TASK=second {{ tasks.first.output }}",
        },
    ]
    log = kubeconfig.with_name("rotel.log")
    with OtlpReceiver(log) as receiver, OpenAIStub(reply=reply_naming_the_task) as stub:
        stub.inject(Fault.held(release), Fault.server_error())
        otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"}
        with troupe.operator_process(kubeconfig, "op-a", otel) as first:
            troupe.apply(agent("worker", stub.base_url), workflow("traced", tasks))
            wait_for(lambda: stub.chat_requests, timeout=WAIT, what="the first model call")
            first.signal(signal.SIGKILL)
        with troupe.operator_process(kubeconfig, "op-b", otel):
            release.set()
            status = troupe.wait_for_phase("traced", "Succeeded", "Failed", timeout=WAIT)
            assert status["phase"] == "Succeeded", status.get("message")
            trace_id = uuid.UUID(troupe.workflow("traced")["metadata"]["uid"]).hex
            spans = wait_for(
                lambda: complete(receiver, trace_id), timeout=WAIT, what=f"the spans in {log}"
            )
            container = troupe.jobs("traced")[0].spec.template.spec.containers[0]
            env = {variable.name for variable in container.env}

    assert {"TRACEPARENT", "OTEL_EXPORTER_OTLP_ENDPOINT"} <= env
    by_id = {span.span_id: span for span in spans}
    assert len(by_id) == len(spans) == 10
    [root] = [span for span in spans if span.name == "invoke_workflow"]
    assert root.parent_id == "" and root.service == "troupe-operator"
    assert root.attributes["troupe.workflow.phase"] == "Succeeded"
    assert root.attributes["gen_ai.operation.name"] == "invoke_workflow"

    attempts = {
        (s.attributes["troupe.task.name"], s.attributes["troupe.task.attempt"]): s
        for s in spans
        if s.name.startswith("task ")
    }
    assert set(attempts) == {("first", "1"), ("second", "1"), ("second", "2")}
    assert {s.attributes["troupe.task.phase"] for s in attempts.values()} == {
        "Succeeded",
        "Failed",
    }
    assert attempts["second", "1"].attributes["error.type"] == "TaskFailed"
    for attempt in attempts.values():
        assert attempt.parent_id == root.span_id and attempt.service == "troupe-operator"
        assert attempt.attributes["gen_ai.agent.name"] == "worker"

    runs = [span for span in spans if span.name == "invoke_agent worker"]
    assert {by_id[run.parent_id].name for run in runs} == {"task first", "task second"}
    assert sorted(run.parent_id for run in runs) == sorted(s.span_id for s in attempts.values())
    for run in runs:
        assert run.service == "troupe-agent" and run.scope[1] == SCHEMA_URL
        assert run.attributes["gen_ai.agent.name"] == "worker"
        assert run.attributes["gen_ai.provider.name"] == "openai"

    calls = [span for span in spans if span.name == "chat stub-model"]
    assert sorted(call.parent_id for call in calls) == sorted(run.span_id for run in runs)
    failed_call = by_id[attempts["second", "1"].span_id]
    for call in calls:
        assert call.kind == "SPAN_KIND_CLIENT" and call.service == "troupe-agent"
        assert call.attributes["gen_ai.operation.name"] == "chat"
        assert call.attributes["gen_ai.provider.name"] == "openai"
        assert call.attributes["gen_ai.request.model"] == "stub-model"
        assert call.attributes["server.address"] == "127.0.0.1"
        under_failed_attempt = by_id[by_id[call.parent_id].parent_id] is failed_call
        if under_failed_attempt:
            assert call.attributes["error.type"] == "500"
        else:
            assert int(call.attributes["gen_ai.usage.input_tokens"]) > 0
            assert int(call.attributes["gen_ai.usage.output_tokens"]) > 0

    for span in [root, *attempts.values()]:
        for value in span.attributes.values():
            assert "TASK=" not in value and "output-of-" not in value, (span.name, value)
