"""Structured outputs and conditions end to end: the real operator, Job runner, task processes
and the OpenAI stub. The operator decides each ``when`` from the fields the triage task's pod
reported; it never reads the output itself."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.troupe_driver import Troupe, agent, reply_naming_the_task, workflow
from tests.support.openai_stub import Answer, OpenAIStub, ToolCall
from troupe_agent.structured import OUTPUT_TOOL

TRIAGE_SCHEMA = {
    "type": "object",
    "properties": {"deep": {"type": "boolean"}, "compare": {"type": "boolean"}},
    "required": ["deep", "compare"],
}
VERDICT = {"deep": True, "compare": False}


def triage_reply(body: dict[str, Any]) -> Answer:
    """The triage task (offered the output tool) gets VERDICT; every other task its name."""
    tools = [tool["function"]["name"] for tool in body.get("tools") or []]
    return ToolCall(OUTPUT_TOOL, VERDICT) if OUTPUT_TOOL in tools else reply_naming_the_task(body)


@pytest.fixture
def stub() -> Iterator[OpenAIStub]:
    with OpenAIStub(reply=triage_reply) as server:
        yield server


def triage_tasks(retries: int = 0) -> list[dict[str, Any]]:
    return [
        {"name": "triage", "outputSchema": TRIAGE_SCHEMA, "retries": retries},
        {
            "name": "deep-analysis",
            "dependsOn": ["triage"],
            "when": "tasks.triage.json.deep == true",
            "prompt": "TASK=deep-analysis deep={{ tasks.triage.json.deep }}",
        },
        {"name": "comparison", "dependsOn": ["triage"], "when": "tasks.triage.json.compare"},
        {"name": "comparison-table", "dependsOn": ["comparison"]},
        {"name": "report", "dependsOn": ["deep-analysis", "comparison"]},
    ]


def test_the_triage_verdict_runs_one_branch_and_skips_the_other(
    troupe: Troupe, stub: OpenAIStub
) -> None:
    troupe.apply(agent("worker", stub.base_url), workflow("triage", triage_tasks()))
    with troupe.operator():
        status = troupe.wait_for_phase("triage", "Succeeded", "Failed", timeout=90)
    assert status["phase"] == "Succeeded", status.get("message")
    assert status["message"] == "3 tasks succeeded, 2 skipped by conditions"
    tasks = status["tasks"]
    assert tasks["triage"]["fields"] == VERDICT
    assert {name: tasks[name]["phase"] for name in tasks} == {
        "triage": "Succeeded",
        "deep-analysis": "Succeeded",
        "comparison": "Skipped",
        "comparison-table": "Skipped",
        "report": "Succeeded",
    }
    for name in ("comparison", "comparison-table"):
        assert tasks[name]["reason"] == "ConditionFalse" and tasks[name]["attempts"] == 0
    assert tasks["comparison"]["message"] == ("not run: condition false: tasks.triage.json.compare")
    outputs = troupe.config_maps("triage")
    triage_output = outputs[troupe.run("triage").output_config_map("triage")]["output"]
    assert json.loads(triage_output) == VERDICT
    prompts = [json.dumps(request.body) for request in stub.chat_requests]
    assert len(prompts) == 3  # triage, deep-analysis, report: nothing for the skipped branch
    assert any("TASK=deep-analysis deep=True" in prompt for prompt in prompts)
    assert "TaskSkipped" in troupe.event_reasons("triage")


def test_a_reply_that_does_not_match_the_schema_is_retried_with_the_error_said(
    troupe: Troupe, stub: OpenAIStub
) -> None:
    stub.script(ToolCall(OUTPUT_TOOL, {"deep": "yes", "compare": False}))
    troupe.apply(agent("worker", stub.base_url), workflow("mismatch", triage_tasks(retries=1)))
    with troupe.operator():
        status = troupe.wait_for_phase("mismatch", "Succeeded", "Failed", timeout=90)
    assert status["phase"] == "Succeeded", status.get("message")
    assert status["tasks"]["triage"]["attempts"] == 2
    assert status["tasks"]["triage"]["fields"] == VERDICT
    retries = [
        event.message
        for event in troupe.core.list_namespaced_event("default").items
        if event.involved_object.name == "mismatch" and event.reason == "RetryScheduled"
    ]
    assert retries == [
        "task 'triage' attempt 1 failed: the model's reply does not match outputSchema at "
        "deep: 'yes' is not of type 'boolean'; attempt 2 of 2 in 0s"
    ]
