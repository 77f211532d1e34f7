"""Semantic validation of Workflows beyond what the schema can say."""

from __future__ import annotations

from typing import Any

from troupe_operator import dag
from troupe_operator.api import WorkflowSpec
from troupe_operator.spec_checks import check_workflow


def workflow(*tasks: dict[str, Any], inputs: dict[str, str] | None = None) -> WorkflowSpec:
    return WorkflowSpec.model_validate({"inputs": inputs or {}, "tasks": list(tasks)})


def task(name: str, *depends_on: str, prompt: str = "p", agent: str = "a") -> dict[str, Any]:
    return {"name": name, "agent": agent, "prompt": prompt, "dependsOn": list(depends_on)}


def test_a_valid_diamond_has_no_problems() -> None:
    spec = workflow(
        task("a", prompt="{{ inputs.topic }}"),
        task("b", "a", prompt="{{ tasks.a.output }}"),
        task("c", "a"),
        task("d", "b", "c", prompt="{{ tasks.a.output }} {{ tasks.b.output }}"),
        inputs={"topic": "t"},
    )
    assert check_workflow("diamond", spec, known_agents={"a"}) == []


def test_cycle_is_named_in_dependency_order() -> None:
    spec = workflow(task("a", "c"), task("b", "a"), task("c", "b"))
    assert check_workflow("w", spec) == ["dependency cycle: a -> c -> b -> a"]


def test_self_dependency_and_unknown_dependency() -> None:
    spec = workflow(task("a", "a"), task("b", "ghost"))
    assert check_workflow("w", spec) == [
        "task 'a' depends on itself",
        "task 'b' depends on unknown task 'ghost'",
    ]


def test_duplicate_task_names() -> None:
    spec = workflow(task("a"), task("a"))
    assert check_workflow("w", spec) == ["task name 'a' is used 2 times"]


def test_template_must_use_known_inputs_and_upstream_tasks() -> None:
    spec = workflow(
        task("a", prompt="{{ inputs.nope }}"),
        task("b", prompt="{{ tasks.a.output }}"),
        task("c", "b", prompt="{{ tasks.a.output }} {{ tasks.b.output }}"),
        task("d", prompt="{{ inputs. }}"),
    )
    assert check_workflow("w", spec) == [
        "task 'a' prompt uses unknown input 'nope'",
        "task 'b' prompt uses the output of 'a', which is not upstream of it",
        "task 'c' prompt uses the output of 'a', which is not upstream of it",
        "task 'd' prompt: template syntax error on line 1: expected name or number",
    ]


def test_transitive_upstream_output_is_allowed() -> None:
    spec = workflow(task("a"), task("b", "a"), task("c", "b", prompt="{{ tasks.a.output }}"))
    assert check_workflow("w", spec) == []


def test_unknown_agent_only_when_agents_are_known() -> None:
    spec = workflow(task("a", agent="ghost"))
    assert check_workflow("w", spec) == []
    assert check_workflow("w", spec, known_agents={"researcher"}) == [
        "task 'a' uses agent 'ghost', which is not defined"
    ]


def test_name_too_long_for_child_labels() -> None:
    spec = workflow(task("a"))
    [problem] = check_workflow("w" * 64, spec)
    assert "64 characters; at most 63" in problem


def test_ancestors_and_topological_order() -> None:
    dependencies = {"d": ["b", "c"], "b": ["a"], "c": ["a"], "a": []}
    order = dag.topological_order(dependencies)
    assert order.index("a") < order.index("b") < order.index("d")
    assert dag.ancestors(dependencies)["d"] == frozenset({"a", "b", "c"})
    assert dag.find_cycle(dependencies) is None
