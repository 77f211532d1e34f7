"""A supervise task's units in task mode: the decision schema shared with the team endpoint, a
turn that reads the earlier turns and decides (against the OpenAI stub, and offline), the rules
a decision must keep, and a delegation that reads its instruction from the turn's output."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.openai_stub import Answer, OpenAIStub, ToolCall
from tests.unit.test_agent_task import failure, prepare, report, task_input
from troupe_agent.conversations import MAX_OUTPUT
from troupe_agent.decisions import Finish, decision_messages, read_decision
from troupe_agent.scripted import PLACEHOLDER_BANNER
from troupe_agent.supervise import Step
from troupe_agent.task import run_task_mode
from troupe_operator.api import EXIT_PERMANENT, EXIT_RETRYABLE, AgentSpec, TurnDecision

SPEC = {
    "inputs": {"topic": "tides"},
    "tasks": [
        {"name": "brief", "agent": "a", "prompt": "earlier"},
        {
            "name": "research",
            "dependsOn": ["brief"],
            "prompt": "Research {{ inputs.topic }} from {{ tasks.brief.output }}",
            "supervise": {"agent": "lead", "members": ["math", "writer"], "maxConcurrent": 2},
        },
    ],
}
TURN_1 = {"delegations": [{"member": "math", "instruction": "Compute 6*7"}]}
OUTPUTS = {
    "brief": "the brief",
    "research.turn-1": json.dumps(TURN_1),
    "research.turn-1.1": "forty-two " + "x" * 2 * MAX_OUTPUT,
}


def delegate(member: str, instruction: str = "Do it") -> ToolCall:
    return ToolCall("delegate", {"member": member, "instruction": instruction})


@pytest.mark.parametrize(
    ("calls", "text", "decision"),
    [
        ([{"name": "delegate", "args": {"member": "m", "instruction": "6*7"}}], "", "m:6*7"),
        (
            [
                {"name": "delegate", "args": {"member": "m", "instruction": "a"}},
                {"name": "delegate", "args": {"member": "w", "instruction": "b"}},
            ],
            "",
            "m:a w:b",
        ),
        ([{"name": "finish", "args": {"answer": "42"}}], "", "=42"),
        ([], "plain text", "=plain text"),
    ],
)
def test_the_decision_is_the_tools_the_model_called(
    calls: list[dict[str, Any]], text: str, decision: str
) -> None:
    chosen = read_decision(calls, text)
    if isinstance(chosen, Finish):
        assert f"={chosen.answer}" == decision
    else:
        assert " ".join(f"{d.member}:{d.instruction}" for d in chosen) == decision


@pytest.mark.parametrize(
    ("calls", "error"),
    [
        ([{"name": "shell", "args": {}}], "unknown tool 'shell'"),
        (
            [{"name": "finish", "args": {"answer": "x"}}, {"name": "delegate", "args": {}}],
            "called finish together with other tools",
        ),
    ],
)
def test_a_decision_off_the_menu_is_refused(calls: list[dict[str, Any]], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        read_decision(calls, "")


def test_the_supervisor_is_told_how_many_steps_a_turn_may_give() -> None:
    steps = [Step("math", "6*7", "42")]
    one = decision_messages(AgentSpec(), ["math"], "R", [], at_once=1)
    many = decision_messages(AgentSpec(), ["math"], "R", steps, at_once=3)
    assert "to give one member one step" in one[0].text
    assert "(at most 3 in one turn;" in many[0].text and "sees only its instruction" in many[0].text
    assert one[1].text == "## Request\nR\n\n## Turns so far\n(none yet)"
    assert many[1].text.endswith("1. math was asked: 6*7\n   and answered: 42")


@pytest.fixture
def stub() -> Any:
    with OpenAIStub() as server:
        yield server


def turn_2(tmp_path: Path, stub: OpenAIStub, *replies: Answer) -> Any:
    """The second turn of ``research`` on the stub, which answers ``replies``."""
    stub.script(*replies)
    wire = task_input(
        task="research",
        instance="research.turn-2",
        agentName="lead",
        agent={"role": "supervisor", "model": {"name": "stub-model", "baseURL": stub.base_url}},
        upstream={"brief": "wf-brief"},
        supervise={
            "history": [
                {
                    "turn": "research.turn-1",
                    "decision": "wf-research.turn-1",
                    "outputs": ["wf-research.turn-1.1"],
                }
            ]
        },
    )
    return prepare(tmp_path, wire, SPEC, OUTPUTS)


def test_a_turn_reads_the_earlier_turns_and_delegates_several_steps_at_once(
    tmp_path: Path, stub: OpenAIStub
) -> None:
    options = turn_2(tmp_path, stub, [delegate("writer", "Write it up"), delegate("math", "Check")])
    assert run_task_mode(options) == 0
    written = json.loads((tmp_path / "out.json").read_text())
    assert json.loads(written["output"]) == {
        "delegations": [
            {"member": "writer", "instruction": "Write it up"},
            {"member": "math", "instruction": "Check"},
        ]
    }
    assert report(options).decision == TurnDecision(members=["writer", "math"])
    [request] = stub.chat_requests
    body = request.body or {}
    assert body["parallel_tool_calls"] is True
    assert [tool["function"]["name"] for tool in body["tools"]] == ["delegate", "finish"]
    asked = body["messages"][-1]["content"]
    assert asked.startswith(
        "## Request\nResearch tides from the brief\n\n## Turns so far\n"
        "1. math was asked: Compute 6*7\n   and answered: forty-two xxx"
    )
    assert f"more characters cut: limit {MAX_OUTPUT}]" in asked


def test_a_turn_that_finishes_writes_the_answer(tmp_path: Path, stub: OpenAIStub) -> None:
    options = turn_2(tmp_path, stub, ToolCall("finish", {"answer": "The answer is 42."}))
    assert run_task_mode(options) == 0
    assert json.loads((tmp_path / "out.json").read_text())["output"] == "The answer is 42."
    assert report(options).decision == TurnDecision(finished=True)


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (delegate("poet"), "the supervisor delegated to 'poet', not a member (math, writer)"),
        (
            [delegate("math"), delegate("math"), delegate("writer")],
            "delegated 3 steps in one turn, more than supervise.maxConcurrent (2)",
        ),
        (delegate("math", " "), "the supervisor delegated a step with no instruction"),
        (ToolCall("finish", {"answer": ""}), "the supervisor finished with an empty answer"),
        (ToolCall("search", {}), "called an unknown tool 'search'"),
    ],
)
def test_a_decision_that_breaks_a_rule_is_a_retryable_failure_naming_it(
    tmp_path: Path, stub: OpenAIStub, reply: Answer, message: str
) -> None:
    outcome = failure(turn_2(tmp_path, stub, reply), EXIT_RETRYABLE)
    assert message in (outcome.message or "")
    assert outcome.result is not None and outcome.result.calls == 1  # what it cost, reported


def test_the_scripted_supervisor_finishes_at_once_offline(tmp_path: Path) -> None:
    wire = task_input(
        task="research",
        agentName="lead",
        agent={"role": "supervisor"},
        upstream={"brief": "wf-brief"},
        supervise={},
    )
    options = prepare(tmp_path, wire, SPEC, {"brief": "the brief"})
    assert run_task_mode(options) == 0
    output = json.loads((tmp_path / "out.json").read_text())["output"]
    assert output.startswith(PLACEHOLDER_BANNER)
    assert report(options).decision == TurnDecision(finished=True)


def delegation(tmp_path: Path, member: str, stub: OpenAIStub | None = None, index: int = 0) -> Any:
    model = {"name": "stub-model", "baseURL": stub.base_url} if stub else {}
    wire = task_input(
        task="research",
        instance="research.turn-1.1",
        agentName=member,
        agent={"role": "executor", "model": model},
        upstream={"brief": "wf-brief"},
        supervise={
            "instruction": {
                "turn": "research.turn-1",
                "decision": "wf-research.turn-1",
                "index": index,
            }
        },
    )
    return prepare(tmp_path, wire, SPEC, OUTPUTS)


def test_a_delegation_runs_its_member_on_the_instruction_alone(
    tmp_path: Path, stub: OpenAIStub
) -> None:
    options = delegation(tmp_path, "math", stub)
    assert run_task_mode(options) == 0
    [request] = stub.chat_requests
    users = [m["content"] for m in (request.body or {})["messages"] if m["role"] == "user"]
    assert users == ["Compute 6*7"]  # not the request, not the brief
    assert json.loads((tmp_path / "out.json").read_text())["output"].startswith("stub reply to")
    assert report(options).decision is None


@pytest.mark.parametrize(("member", "index"), [("writer", 0), ("math", 1)])
def test_a_delegation_the_turn_did_not_make_is_permanent(
    tmp_path: Path, member: str, index: int
) -> None:
    outcome = failure(delegation(tmp_path, member, index=index), EXIT_PERMANENT)
    assert f"turn 'research.turn-1' has no delegation {index + 1} to member '{member}'" in (
        outcome.message or ""
    )
