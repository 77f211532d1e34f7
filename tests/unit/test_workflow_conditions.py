"""Conditions (``when``) and structured outputs in the core: the expression language, the
static checks, skipping as in Argo, and random DAGs with conditions."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.test_workflow_core import RUN, Cluster, created_tasks, workflow
from troupe_operator import expressions
from troupe_operator.api import TaskPhase, WorkflowPhase, WorkflowSpec
from troupe_operator.spec_checks import check_workflow
from troupe_operator.workflow import CreateTask, JobState, reconcile
from troupe_operator.workflow.compaction import fit_status, wire_size

FLAGS = {
    "type": "object",
    "properties": {
        "deep": {"type": "boolean"},
        "compare": {"type": "boolean"},
        "score": {"type": "number"},
        "kind": {"type": "string"},
        "meta": {"type": "object", "properties": {"lang": {"type": "string"}}},
    },
}
INPUTS = {"mode": "full"}
FIELDS = {"triage": {"deep": True, "compare": False, "score": 3, "kind": "bug"}}


@pytest.mark.parametrize(
    ("text", "holds"),
    [
        ("tasks.triage.json.deep", True),
        ("tasks.triage.json.deep == true", True),
        ("tasks.triage.json.compare", False),
        ("not tasks.triage.json.compare", True),
        ("!tasks.triage.json.compare && tasks.triage.json.deep", True),
        ("tasks.triage.json.compare || inputs.mode == 'full'", True),
        ("tasks.triage.json.score >= 3 and tasks.triage.json.score < 3.5", True),
        ("tasks.triage.json.score > 'a'", False),  # ordering across types is false
        ("tasks.triage.json.deep == 1", False),  # JSON equality: true is not 1
        ("tasks.triage.json.kind in ['bug', \"outage\"]", True),
        ("'u' in tasks.triage.json.kind", True),
        ("tasks.triage.json.meta.lang == null", True),  # absent is null
        ("tasks.gone.json.deep != true", True),  # a skipped task's fields are null
        ("inputs.mode", False),  # only the boolean true is true
        ("(((tasks.triage.json.deep)))", True),
        ("tasks.triage.json.score == -1e3", False),
    ],
)
def test_expressions_evaluate_over_inputs_and_fields(text: str, holds: bool) -> None:
    assert expressions.evaluate(expressions.parse(text), INPUTS, FIELDS) is holds


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "is empty"),
        ("tasks.triage.json", "must be followed by a field"),
        ("tasks.triage.output == 'x'", "expected 'json'"),
        ("inputs.mode ==", "expected a value"),
        ("__import__('os')", "at column 1, found '__import__'"),
        ("inputs.a $ 2", "unexpected character at column 10"),
        ("inputs.mode == 'x' extra", "unexpected 'extra'"),
        ("(" * 40 + "true" + ")" * 40, "nested more than 32"),
        ("x" * 1025, "at most 1024"),
        ("'\\q' == 'q'", "bad escape"),
    ],
)
def test_expressions_refuse_what_is_not_the_language(text: str, error: str) -> None:
    with pytest.raises(expressions.ExpressionError, match=error):
        expressions.parse(text)


def test_project_keeps_only_the_fields_conditions_read() -> None:
    value = {"deep": True, "report": "long text", "meta": {"lang": "en", "n": 1}}
    paths = expressions.fields_read(
        ["tasks.t.json.deep and tasks.t.json.meta.lang == 'en'", "tasks.other.json.x", "(("],
        "t",
    )
    assert expressions.project(value, paths) == {"deep": True, "meta": {"lang": "en"}}


def spec_with(*tasks: dict[str, Any], inputs: dict[str, str] | None = None) -> WorkflowSpec:
    return workflow(*tasks, inputs=inputs or {"topic": "t", "mode": "x"})


@pytest.mark.parametrize(
    ("tasks", "problem"),
    [
        (
            [{"name": "t", "outputSchema": {"type": "strin"}}],
            "task 't' outputSchema is not a valid JSON Schema at type:",
        ),
        ([{"name": "t", "outputSchema": {"type": "array"}}], "must have type: object"),
        (
            [{"name": "t", "outputSchema": {"type": "object", "description": "x" * 17_000}}],
            "(MAX_OUTPUT_SCHEMA_BYTES)",
        ),
        ([{"name": "t", "when": "inputs.mode =="}], "task 't' when: expected a value"),
        ([{"name": "t", "when": "inputs.nope == 'a'"}], "when uses unknown input 'nope'"),
        (
            [{"name": "a", "outputSchema": FLAGS}, {"name": "b", "when": "tasks.a.json.deep"}],
            "reads tasks.a.json.deep, but task 'a' is not upstream of it",
        ),
        (
            [{"name": "a"}, {"name": "b", "deps": ["a"], "when": "tasks.a.json.deep"}],
            "but task 'a' has no outputSchema",
        ),
        (
            [
                {"name": "a", "outputSchema": FLAGS},
                {"name": "b", "deps": ["a"], "when": "tasks.a.json.meta.nope"},
            ],
            "the outputSchema of 'a' declares no such field",
        ),
        (
            [{"name": "a"}, {"name": "b", "deps": ["a"], "prompt": "{{ tasks.a.json.x }}"}],
            "prompt uses tasks.a.json, but task 'a' has no outputSchema",
        ),
    ],
)
def test_static_checks_of_schemas_and_conditions(tasks: list[dict[str, Any]], problem: str) -> None:
    problems = check_workflow("wf", spec_with(*tasks))
    assert any(problem in line for line in problems), problems


def test_a_condition_may_read_a_transitive_upstream_field() -> None:
    spec = spec_with(
        {"name": "a", "outputSchema": FLAGS},
        {"name": "b", "deps": ["a"], "prompt": "{{ tasks.a.json.kind }}"},
        {"name": "c", "deps": ["b"], "when": "tasks.a.json.meta.lang == 'en' or inputs.mode"},
    )
    assert check_workflow("wf", spec) == []


TRIAGE = workflow(
    {"name": "triage", "outputSchema": FLAGS},
    {"name": "deep", "deps": ["triage"], "when": "tasks.triage.json.deep"},
    {"name": "compare", "deps": ["triage"], "when": "tasks.triage.json.compare == true"},
    {"name": "chart", "deps": ["compare"]},
    {"name": "report", "deps": ["deep", "compare"]},
)


def test_a_false_condition_skips_its_task_and_what_depends_only_on_skipped_tasks() -> None:
    cluster = Cluster(TRIAGE)
    cluster.step()
    cluster.succeed("triage", fields={"deep": True, "compare": False})
    assert created_tasks(cluster.step()) == [("deep", 1)]
    assert cluster.task("triage").fields == {"deep": True, "compare": False}
    compare, chart = cluster.task("compare"), cluster.task("chart")
    assert (compare.phase, compare.reason) == (TaskPhase.SKIPPED, "ConditionFalse")
    assert compare.message == "not run: condition false: tasks.triage.json.compare == true"
    assert (chart.phase, chart.reason) == (TaskPhase.SKIPPED, "ConditionFalse")
    assert chart.message == "not run: every upstream task was skipped by a condition"
    assert [e.message for e in cluster.events_of("TaskSkipped")] == [
        "task 'compare' not run: condition false: tasks.triage.json.compare == true"
    ]
    cluster.succeed("deep")
    [start] = cluster.step().of_type(CreateTask)  # a mix of succeeded and skipped: it runs
    assert start.task == "report"
    assert start.task_input.upstream == {"deep": RUN.output_config_map("deep")}
    assert start.task_input.skipped == ["compare"]
    cluster.succeed("report")
    cluster.step()
    assert cluster.status.phase == WorkflowPhase.SUCCEEDED
    assert cluster.status.message == "3 tasks succeeded, 2 skipped by conditions"
    assert cluster.status.progress == "3/5"


def test_a_failure_upstream_still_skips_without_the_condition_reason() -> None:
    cluster = Cluster(TRIAGE)
    cluster.step()
    cluster.fail("triage")
    cluster.step()
    assert {cluster.task(n).reason for n in ("deep", "compare", "chart", "report")} == {None}
    assert cluster.status.phase == WorkflowPhase.FAILED


def test_a_condition_over_a_lost_report_fails_rather_than_guesses() -> None:
    cluster = Cluster(TRIAGE)
    cluster.step()
    job = cluster.running("triage")
    cluster.jobs[job.name] = job.__class__(
        job.name, job.task, job.attempt, JobState.SUCCEEDED, cluster.now, cluster.now
    )
    cluster.step()
    assert cluster.task("deep").phase == TaskPhase.FAILED
    assert "whose pod left no report" in cluster.task("deep").message


def test_fields_a_pending_condition_needs_survive_status_slimming() -> None:
    cluster = Cluster(TRIAGE)
    cluster.step()
    cluster.succeed("triage", fields={"deep": True, "compare": False})
    status = cluster.step().status.model_copy(update={"phase": WorkflowPhase.RUNNING})
    finished = status.model_copy(update={"tasks": {**status.tasks, "deep": status.tasks["triage"]}})
    assert wire_size(finished) > 1
    slim = fit_status(finished, budget=1, needed=frozenset({"triage"}))
    assert slim.tasks["triage"].fields == {"deep": True, "compare": False}
    assert slim.tasks["deep"].fields is None


# Property test: random DAGs whose tasks have conditions over their dependencies' flags.


@st.composite
def conditional_runs(draw: st.DrawFn) -> tuple[WorkflowSpec, dict[str, bool], int]:
    count = draw(st.integers(1, 7))
    names = [f"t{i}" for i in range(count)]
    schema = {"type": "object", "properties": {"go": {"type": "boolean"}}}
    tasks = []
    for index, name in enumerate(names):
        deps = draw(st.lists(st.sampled_from(names[:index]), unique=True)) if index else []
        task: dict[str, Any] = {"name": name, "deps": deps, "outputSchema": schema}
        if deps and draw(st.booleans()):
            source = draw(st.sampled_from(deps))
            task["when"] = draw(
                st.sampled_from([f"tasks.{source}.json.go", f"not tasks.{source}.json.go"])
            )
        tasks.append(task)
    spec = workflow(*tasks, parallelism=draw(st.none() | st.integers(1, 3)))
    flags = {name: draw(st.booleans()) for name in names}
    return spec, flags, draw(st.integers(0, 2**16))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conditional_runs())
def test_random_dags_with_conditions_run_dependencies_first_and_terminate(
    run: tuple[WorkflowSpec, dict[str, bool], int],
) -> None:
    spec, flags, seed = run
    chooser = random.Random(seed)
    cluster = Cluster(spec)
    tasks = {task.name: task for task in spec.tasks}
    for _ in range(100):
        decision = reconcile(cluster.observe())
        for action in decision.of_type(CreateTask):
            assert action.job_name not in cluster.jobs, "an attempt started twice"
            task = tasks[action.task]
            finished = [decision.status.tasks[d].phase for d in task.depends_on]
            assert all(p in (TaskPhase.SUCCEEDED, TaskPhase.SKIPPED) for p in finished)
            assert TaskPhase.SUCCEEDED in finished or not finished, "ran below only skips"
            if task.when:  # a skipped dependency's fields are null
                fields = {
                    name: {"go": flags[name]}
                    for name in task.depends_on
                    if decision.status.tasks[name].phase == TaskPhase.SUCCEEDED
                }
                assert expressions.evaluate(expressions.parse(task.when), {}, fields)
        cluster.step()
        if cluster.status.phase == WorkflowPhase.SUCCEEDED:
            break
        for job in [j for j in cluster.jobs.values() if j.state == JobState.ACTIVE]:
            if chooser.random() < 0.6:
                cluster.succeed(job.task, fields={"go": flags[job.task]})
        cluster.advance(1)
    assert cluster.status.phase == WorkflowPhase.SUCCEEDED, "run did not finish"
    for status in cluster.status.tasks.values():
        assert status.phase in (TaskPhase.SUCCEEDED, TaskPhase.SKIPPED)
        if status.phase == TaskPhase.SKIPPED:
            assert status.reason == "ConditionFalse"
