"""A judge's step: score every candidate's output on every criterion, as structured output.

A task with ``candidates`` ends with one judge unit. Its pod gets the candidates'
output ConfigMaps by label (``TaskInput.candidates``: candidate-1, …, only those that
succeeded), reads them, and asks the judge Agent, in one structured call
(:func:`~troupe_agent.agent.run_structured_task`), for a score from 0 to 1 of each
candidate on each criterion of ``candidates.judge.criteria``, under a schema built
here: every candidate, every criterion, a number in [0, 1], nothing else. The judge
sees the task as its candidates saw it (the rendered prompt and its material) and the
candidates by label only, not by Agent. Weights and the cost penalty are not shown: the
operator applies them to the scores this pod reports (``TaskReport.scores``, rounded to
``SCORE_DECIMALS``), and picks the winner itself. The scripted model answers the
schema's minimal instance (every score 0), so an offline run picks candidate-1.

This module refuses what would not fit: candidates that with the task come to more than
``MAX_PROMPT_CHARS`` are a permanent failure, naming the limit, rather than a cut.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from troupe_agent.agent import AgentOptions, run_structured_task
from troupe_agent.failures import TaskFailed
from troupe_agent.prompts import TaskPrompt
from troupe_agent.retry import Deadline
from troupe_agent.structured import OUTPUT_TOOL
from troupe_operator.api import EXIT_PERMANENT, MAX_PROMPT_CHARS, TaskInput, TaskResult, TaskSpec

SCORE_DECIMALS: Final = 4
"""Scores are reported to this precision: finer would only fill the report."""

INSTRUCTION: Final = (
    "You are the judge. Several candidates answered the task below independently. Score "
    "every candidate on every criterion, from 0 (worst) to 1 (best), on its own merits and "
    f"without regard to its length or position, and submit the scores with {OUTPUT_TOOL}."
)


def judge_schema(labels: Sequence[str], criteria: Sequence[str]) -> dict[str, Any]:
    """Every candidate (by label) scored on every criterion, each a number in [0, 1]."""
    score = {"type": "number", "minimum": 0, "maximum": 1}
    candidate = {
        "type": "object",
        "properties": dict.fromkeys(criteria, score),
        "required": list(criteria),
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": dict.fromkeys(labels, candidate),
        "required": list(labels),
        "additionalProperties": False,
    }


def answer_heading(label: str) -> str:
    """Where a candidate's output stands in the judge's material (no task is named so)."""
    return f"The answer of {label}"


def judge_prompt(
    task: TaskPrompt, answers: Mapping[str, str], criteria: Sequence[str]
) -> TaskPrompt:
    """The judge's request: the instruction, the criteria and the task; its material is the
    task's own, then each candidate's answer under its label."""
    text = (
        f"{INSTRUCTION}\n\nCriteria: {', '.join(criteria)}.\n\n"
        f"## The task the candidates answered\n{task.text}"
    )
    material = {
        **task.material,
        **{answer_heading(label): answer for label, answer in answers.items()},
    }
    size = len(text) + sum(len(body) for body in material.values())
    if size > MAX_PROMPT_CHARS:
        raise TaskFailed(
            f"the task and its {len(answers)} candidates' answers are {size} characters, more "
            f"than the {MAX_PROMPT_CHARS} a judge may send (MAX_PROMPT_CHARS); ask for shorter "
            "answers",
            EXIT_PERMANENT,
        )
    return TaskPrompt(text=text, material=material)


def judge_candidates(
    task_input: TaskInput,
    spec: TaskSpec,
    task: TaskPrompt,
    answers: Mapping[str, str],
    api_key: str | None,
    deadline: Deadline,
    options: AgentOptions,
) -> tuple[str, TaskResult, dict[str, list[float]]]:
    """Score ``answers`` (by label) on the criteria of ``spec``'s judge with one structured
    call: the judge's JSON as text (its output), what it cost, and the scores to report.
    Raises ModelCallError or TaskFailed as a structured task does."""
    if spec.candidates is None:
        raise TaskFailed(
            f"the input makes this a judge, but task '{spec.name}' has no candidates",
            EXIT_PERMANENT,
        )
    criteria = [criterion.name for criterion in spec.candidates.judge.criteria]
    schema = judge_schema(list(answers), criteria)
    prompt = judge_prompt(task, answers, criteria)
    value, text, result = run_structured_task(
        task_input, prompt, schema, api_key, deadline, options
    )
    scores = {
        label: [round(float(value[label][name]), SCORE_DECIMALS) for name in criteria]
        for label in answers
    }
    return text, result, scores
