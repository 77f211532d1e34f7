"""A judge's pod: it reads the candidates' outputs, asks for every score under the schema it
builds (against the OpenAI stub, and offline on the scripted model), and reports the scores."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support.openai_stub import OpenAIStub, ToolCall
from tests.unit.test_agent_structured import stub_agent
from tests.unit.test_agent_task import prepare, report, task_input
from troupe_agent.judging import answer_heading
from troupe_agent.structured import OUTPUT_TOOL
from troupe_agent.task import run_task_mode
from troupe_agent.task_report import success_report
from troupe_operator.api import (
    EXIT_PERMANENT,
    EXIT_RETRYABLE,
    MAX_CANDIDATES,
    MAX_CRITERIA,
    MAX_PROMPT_CHARS,
    MAX_REPORT_BYTES,
    TaskReport,
    TaskResult,
)

CRITERIA = ["accuracy", "depth", "clarity"]
ANSWERS = {"c1": "ANSWER-ONE", "c3": "ANSWER-THREE"}
LABELS = {"candidate-1": "wf-c1", "candidate-3": "wf-c3"}  # candidate-2 failed: not judged


def judged_spec(candidates: bool = True) -> dict[str, Any]:
    judge = {"agent": "j", "criteria": [{"name": n, "weight": 1} for n in CRITERIA]}
    task: dict[str, Any] = {"name": "write", "agent": "a", "prompt": "Name a {{ inputs.topic }}"}
    if candidates:
        task["candidates"] = {"count": 3, "judge": judge}
    return {"inputs": {"topic": "tide"}, "tasks": [task]}


def judge(tmp_path: Path, answers: dict[str, str] = ANSWERS, **wire: Any) -> Any:
    spec = wire.pop("spec", judged_spec())
    options = prepare(
        tmp_path, wire=task_input(candidates=LABELS, **wire), spec=spec, outputs=answers
    )
    return options, run_task_mode(options)


def scores(*rows: list[float]) -> dict[str, dict[str, float]]:
    return {
        label: dict(zip(CRITERIA, row, strict=True))
        for label, row in zip(LABELS, rows, strict=True)
    }


def test_offline_the_scripted_judge_scores_every_candidate_zero(tmp_path: Path) -> None:
    options, code = judge(tmp_path)
    assert code == 0
    assert report(options).scores == {"candidate-1": [0, 0, 0], "candidate-3": [0, 0, 0]}
    output = json.loads(json.loads((tmp_path / "out.json").read_text())["output"])
    assert output == scores([0, 0, 0], [0, 0, 0])


def test_the_judge_sees_the_task_and_the_answers_and_must_score_each_on_each_criterion(
    tmp_path: Path, openai_stub: OpenAIStub
) -> None:
    openai_stub.script(ToolCall(OUTPUT_TOOL, scores([0.9, 0.5, 0.81234], [0.5, 0.5, 0.5])))
    options, code = judge(tmp_path, agent=stub_agent(openai_stub))
    assert code == 0
    assert report(options).scores == {
        "candidate-1": [0.9, 0.5, 0.8123],
        "candidate-3": [0.5, 0.5, 0.5],
    }
    [request] = openai_stub.chat_requests
    assert request.body is not None
    [tool] = request.body["tools"]
    schema = tool["function"]["parameters"]
    assert schema["required"] == list(LABELS) and schema["additionalProperties"] is False
    assert schema["properties"]["candidate-1"]["required"] == CRITERIA
    assert schema["properties"]["candidate-3"]["properties"]["depth"] == {
        "type": "number",
        "minimum": 0,
        "maximum": 1,
    }
    asked = request.body["messages"][-1]["content"]
    assert "Name a tide" in asked and "Criteria: accuracy, depth, clarity." in asked
    assert f"### {answer_heading('candidate-1')}\nANSWER-ONE" in asked
    assert f"### {answer_heading('candidate-3')}\nANSWER-THREE" in asked


def test_a_score_out_of_range_is_a_retryable_mismatch(
    tmp_path: Path, openai_stub: OpenAIStub
) -> None:
    openai_stub.script(ToolCall(OUTPUT_TOOL, scores([1.5, 0, 0], [0, 0, 0])))
    options, code = judge(tmp_path, agent=stub_agent(openai_stub))
    assert code == EXIT_RETRYABLE
    assert report(options).message == (
        "the model's reply does not match outputSchema at candidate-1/accuracy: 1.5 is greater "
        "than the maximum of 1"
    )


def test_answers_too_long_to_judge_are_refused_naming_the_limit(tmp_path: Path) -> None:
    half = "x" * (MAX_PROMPT_CHARS // 2)
    options, code = judge(tmp_path, answers={"c1": half, "c3": half})
    assert code == EXIT_PERMANENT
    assert "a judge may send (MAX_PROMPT_CHARS)" in (report(options).message or "")


def test_a_judge_input_for_a_task_without_candidates_is_permanent(tmp_path: Path) -> None:
    options, code = judge(tmp_path, spec=judged_spec(candidates=False))
    assert code == EXIT_PERMANENT
    assert report(options).message == (
        "the input makes this a judge, but task 'write' has no candidates"
    )


def test_the_most_scores_a_judge_reports_still_fit_the_termination_message() -> None:
    widest = [0.1235] * MAX_CRITERIA  # as wide as a score to 4 decimals prints
    most = {f"candidate-{i}": widest for i in range(1, MAX_CANDIDATES + 1)}
    control = "\x01" * 1000
    statuses = ("connection", "malformed", "timeout", "error", "other", "429", "500", "503")
    failed = dict.fromkeys(statuses, 10**9)
    result = TaskResult(model=control[:253], calls=10**9, failed_calls=failed)
    line = success_report(control, result, scores=most).encode() + "\n"
    assert len(line.encode()) <= MAX_REPORT_BYTES
    assert TaskReport.decode(line) is not None
