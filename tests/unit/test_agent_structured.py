"""Structured output in task mode: the model is asked through a tool for JSON matching the
task's outputSchema (against the OpenAI stub, and offline on the scripted model), the reply
is validated, a mismatch is a retryable failure, and the report carries the fields the run's
conditions read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from tests.support.openai_stub import OpenAIStub, ToolCall
from tests.unit.test_agent_task import prepare, report, task_input
from troupe_agent.failures import TaskFailed
from troupe_agent.structured import (
    OUTPUT_TOOL,
    check_output,
    list_lengths,
    minimal_instance,
    reply_json,
)
from troupe_agent.task import run_task_mode
from troupe_agent.task_prompt import render_values
from troupe_operator.api import EXIT_PERMANENT, EXIT_RETRYABLE, ItemRef, WorkflowSpec

TRIAGE = {
    "type": "object",
    "properties": {
        "deep": {"type": "boolean", "default": True},
        "compare": {"type": "boolean"},
        "summary": {"type": "string", "minLength": 3},
    },
    "required": ["deep", "compare"],
    "additionalProperties": False,
}


def triage_spec(when: str = "tasks.write.json.deep") -> dict[str, Any]:
    """``write`` has TRIAGE as its schema; a later task's condition reads its ``deep``."""
    return {
        "tasks": [
            {"name": "write", "agent": "a", "prompt": "Triage it", "outputSchema": TRIAGE},
            {"name": "next", "agent": "a", "prompt": "Go", "dependsOn": ["write"], "when": when},
        ]
    }


def stub_agent(stub: OpenAIStub) -> dict[str, Any]:
    return {"role": "executor", "model": {"name": "stub-model", "baseURL": stub.base_url}}


@pytest.mark.parametrize(
    "schema",
    [
        TRIAGE,
        {"type": "object", "properties": {"n": {"type": "integer", "minimum": 4}}},
        {"type": "object", "properties": {"k": {"enum": ["b", "a"]}, "c": {"const": 2}}},
        {"type": "object", "properties": {"xs": {"type": "array", "minItems": 2, "items": {}}}},
        {"type": "object", "properties": {"s": {"type": "string", "maxLength": 3}}},
        {"type": "object", "properties": {"u": {"anyOf": [{"type": "null"}, {"type": "number"}]}}},
    ],
)
def test_the_scripted_answer_is_a_valid_instance_of_the_schema(schema: dict[str, Any]) -> None:
    assert list(Draft202012Validator(schema).iter_errors(minimal_instance(schema))) == []


@pytest.mark.parametrize(
    ("text", "calls", "value"),
    [
        ("", ({"name": OUTPUT_TOOL, "args": {"deep": True}},), {"deep": True}),
        ('{"deep": false}', (), {"deep": False}),
        ('```json\n{"deep": false}\n```', (), {"deep": False}),
    ],
)
def test_the_reply_json_is_the_tool_arguments_or_the_text(
    text: str, calls: tuple[Any, ...], value: Any
) -> None:
    assert reply_json(text, calls) == value


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"deep": "yes", "compare": False}, "at deep: 'yes' is not of type 'boolean'"),
        ({"deep": True}, "at (root): 'compare' is a required property"),
        ({"deep": True, "compare": False, "x": 1}, "Additional properties are not allowed"),
    ],
)
def test_a_reply_that_does_not_match_is_retryable_and_says_where(value: Any, message: str) -> None:
    with pytest.raises(TaskFailed, match="does not match outputSchema") as raised:
        check_output(value, TRIAGE)
    assert raised.value.exit_code == EXIT_RETRYABLE and message in str(raised.value)


def test_offline_the_scripted_model_answers_schema_valid_json(tmp_path: Path) -> None:
    options = prepare(tmp_path, spec=triage_spec())
    assert run_task_mode(options) == 0
    written = json.loads((tmp_path / "out.json").read_text())
    assert json.loads(written["output"]) == {"deep": True, "compare": False, "summary": "scripted"}
    assert written["scripted"] is True
    assert report(options).fields == {"deep": True}


def test_against_the_stub_the_tool_arguments_become_the_output_and_the_fields(
    tmp_path: Path, openai_stub: OpenAIStub
) -> None:
    openai_stub.script(ToolCall(OUTPUT_TOOL, {"deep": False, "compare": True, "summary": "ok!"}))
    spec = triage_spec("tasks.write.json.compare or not tasks.write.json.deep")
    options = prepare(tmp_path, wire=task_input(agent=stub_agent(openai_stub)), spec=spec)
    assert run_task_mode(options) == 0
    [request] = openai_stub.chat_requests
    assert request.body is not None
    [tool] = request.body["tools"]
    assert tool["function"]["name"] == OUTPUT_TOOL
    assert tool["function"]["parameters"]["properties"] == TRIAGE["properties"]
    output = json.loads((tmp_path / "out.json").read_text())["output"]
    assert json.loads(output) == {"deep": False, "compare": True, "summary": "ok!"}
    assert report(options).fields == {"deep": False, "compare": True}


def test_against_the_stub_a_mismatch_fails_the_attempt_retryably_with_the_error(
    tmp_path: Path, openai_stub: OpenAIStub
) -> None:
    openai_stub.script(ToolCall(OUTPUT_TOOL, {"deep": "very", "compare": False}))
    options = prepare(tmp_path, wire=task_input(agent=stub_agent(openai_stub)), spec=triage_spec())
    assert run_task_mode(options) == EXIT_RETRYABLE
    outcome = report(options)
    assert not outcome.succeeded and outcome.result is not None and outcome.result.calls == 1
    assert outcome.message == (
        "the model's reply does not match outputSchema at deep: 'very' is not of type 'boolean'"
    )


def test_fields_conditions_read_are_bounded(tmp_path: Path, openai_stub: OpenAIStub) -> None:
    openai_stub.script(ToolCall(OUTPUT_TOOL, {"deep": True, "compare": True, "summary": "x" * 600}))
    spec = triage_spec("tasks.write.json.summary == 'x'")
    options = prepare(tmp_path, wire=task_input(agent=stub_agent(openai_stub)), spec=spec)
    assert run_task_mode(options) == EXIT_PERMANENT
    assert "at most 512 (MAX_CONDITION_JSON_BYTES)" in (report(options).message or "")


def test_a_prompt_reads_upstream_json_and_a_skipped_upstream_is_empty(tmp_path: Path) -> None:
    spec = {
        "tasks": [
            {"name": "t", "agent": "a", "prompt": "x", "outputSchema": TRIAGE},
            {"name": "gone", "agent": "a", "prompt": "x", "outputSchema": TRIAGE},
            {
                "name": "write",
                "agent": "a",
                "dependsOn": ["t", "gone"],
                "prompt": "deep={{ tasks.t.json.deep }} "
                "{% if tasks.gone.json %}gone ran{% else %}gone skipped{% endif %}",
            },
        ]
    }
    wire = task_input(upstream={"t": "wf-t"}, skipped=["gone"])
    options = prepare(tmp_path, wire=wire, spec=spec, outputs={"t": '{"deep": true}'})
    assert run_task_mode(options) == 0
    output = json.loads((tmp_path / "out.json").read_text())["output"]
    assert "deep=True gone skipped" in output


@pytest.mark.parametrize(
    ("value", "counts"),
    [
        ({"topics": ["a", "b"], "meta": {"more": [1]}}, {"topics": 2, "meta.more": 1}),
        ({"topics": None}, {"topics": 0, "meta.more": 0}),  # absent or null: an empty list
    ],
)
def test_a_report_counts_the_lists_for_each_tasks_expand_over(
    value: dict[str, Any], counts: dict[str, int]
) -> None:
    lists = {"topics": ("topics",), "meta.more": ("meta", "more")}
    assert list_lengths(value, lists) == counts
    assert list_lengths(value, {}) is None


def test_a_counted_field_that_is_not_a_list_fails_for_good() -> None:
    with pytest.raises(TaskFailed, match="a str, not a list") as failed:
        list_lengths({"topics": "a, b"}, {"topics": ("topics",)})
    assert failed.value.exit_code == EXIT_PERMANENT


PLAN = WorkflowSpec.model_validate(
    {
        "tasks": [
            {"name": "plan", "agent": "a", "prompt": "p", "outputSchema": {"type": "object"}},
            {"name": "r", "agent": "a", "prompt": "About {{ item.name }}", "dependsOn": ["plan"]},
        ]
    }
)


@pytest.mark.parametrize(("index", "item"), [(0, {"name": "x"}), (1, {"name": "y"})])
def test_an_instance_reads_its_item_from_the_upstream_json(index: int, item: Any) -> None:
    outputs = {"plan": json.dumps({"topics": [{"name": "x"}, {"name": "y"}]})}
    ref = ItemRef(task="plan", path=["topics"], index=index)
    values = render_values(PLAN, outputs, {}, ref)
    assert (values.item, values.has_item) == (item, True)


def test_an_item_beyond_the_upstream_list_fails_for_good() -> None:
    outputs = {"plan": json.dumps({"topics": []})}
    with pytest.raises(TaskFailed, match=r"forEach item 0 of tasks\.plan\.json\.topics is not in"):
        render_values(PLAN, outputs, {}, ItemRef(task="plan", path=["topics"], index=0))
