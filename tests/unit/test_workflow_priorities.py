"""Priorities and deadlines in the core: which ready attempt starts first, why one waits, and
the run that fails at its deadline."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from tests.unit.test_workflow_core import T0, Cluster, created_tasks, workflow
from troupe_operator import dag
from troupe_operator.api import (
    AgentSpec,
    TaskPhase,
    TaskWaiting,
    WorkflowPhase,
    WorkflowSpec,
    WorkflowTemplateSpec,
)
from troupe_operator.workflow import DeleteJob, Event, TenantShare
from troupe_operator.workflow.priorities import Precedence, natural


def started_one_by_one(cluster: Cluster, steps: int) -> list[str]:
    """Run a parallelism-1 cluster: each step starts one task, which then succeeds."""
    order = []
    for _ in range(steps):
        (started,) = created_tasks(cluster.step())
        order.append(started[0])
        cluster.advance(10)
        cluster.succeed(started[0])
    return order


@pytest.mark.parametrize(
    ("tasks", "settings", "order"),
    [
        # Higher priority first.
        ([{"name": "p1", "priority": 1}, {"name": "p5", "priority": 5},
          {"name": "p3", "priority": 3}], {}, ["p5", "p3", "p1"]),
        # A task without one has the Workflow's.
        ([{"name": "a", "priority": -1}, {"name": "b"}, {"name": "c", "priority": 3}],
         {"priority": 2}, ["c", "b", "a"]),
        # Equal priority: the longer remaining critical path first (b -> c -> d holds 3).
        ([{"name": "a"}, {"name": "b"}, {"name": "c", "deps": ["b"]}, {"name": "d", "deps": ["c"]}],
         {}, ["b", "c", "a", "d"]),
        # Priority before the critical path.
        ([{"name": "a", "priority": 1}, {"name": "b"}, {"name": "c", "deps": ["b"]}],
         {}, ["a", "b", "c"]),
        # Then names, numbers by value.
        ([{"name": "t10"}, {"name": "t2"}, {"name": "t1"}], {}, ["t1", "t2", "t10"]),
    ],
)  # fmt: skip
def test_parallelism_one_starts_ready_tasks_by_priority_then_critical_path_then_name(
    tasks: list[dict[str, Any]], settings: dict[str, Any], order: list[str]
) -> None:
    cluster = Cluster(workflow(*tasks, parallelism=1, **settings))
    assert started_one_by_one(cluster, len(order)) == order


def test_among_equals_the_task_that_waited_longest_starts_first_and_status_says_why() -> None:
    cluster = Cluster(
        workflow({"name": "d"}, {"name": "z"}, {"name": "a", "deps": ["d"]}, parallelism=1)
    )
    assert created_tasks(cluster.step()) == [("d", 1)]  # d heads the longer path
    assert cluster.task("z").waiting == TaskWaiting(reason="Parallelism", since=T0, priority=0)
    assert cluster.task("d").waiting is None
    cluster.advance(10)
    cluster.succeed("d")
    cluster.step()  # a is ready now, z since T0: z first, though "a" sorts before it
    assert (cluster.task("z").phase, cluster.task("z").waiting) == (TaskPhase.RUNNING, None)
    assert cluster.task("a").waiting == TaskWaiting(
        reason="Parallelism", since=T0 + timedelta(seconds=10), priority=0
    )
    cluster.advance(10)
    cluster.step()
    assert cluster.task("a").waiting is not None
    assert cluster.task("a").waiting.since == T0 + timedelta(seconds=10), "since moved"


def test_a_retry_has_no_precedence_over_an_attempt_that_waited_longer() -> None:
    cluster = Cluster(workflow({"name": "a", "retries": 1}, {"name": "b"}, parallelism=1))
    assert created_tasks(cluster.step()) == [("a", 1)]
    cluster.advance(10)
    cluster.fail("a")
    assert created_tasks(cluster.step()) == [("b", 1)]  # waiting since T0; a's retry since now
    assert cluster.task("a").waiting is not None
    assert cluster.task("a").waiting.reason == "Parallelism"
    cluster.succeed("b")
    assert created_tasks(cluster.step()) == [("a", 2)]


def test_the_tenants_slots_go_to_the_highest_priority_and_the_rest_wait_with_the_reason() -> None:
    cluster = Cluster(workflow({"name": "a"}, {"name": "b", "priority": 9}, {"name": "c"}))
    cluster.tenant = TenantShare("team-a", free_slots=1, max_concurrent_tasks=1)
    assert created_tasks(cluster.step()) == [("b", 1)]
    waiting = {name: cluster.task(name).waiting for name in "abc"}
    assert waiting == {
        "a": TaskWaiting(reason="TenantConcurrencyLimit", since=T0, priority=0),
        "b": None,
        "c": TaskWaiting(reason="TenantConcurrencyLimit", since=T0, priority=0),
    }


def test_units_of_an_expanded_task_have_its_priority_and_critical_path() -> None:
    spec = workflow(
        {"name": "plan", "outputSchema": {"type": "object"}},
        {"name": "fan", "deps": ["plan"], "priority": 7,
         "forEach": {"from": "tasks.plan.json.topics"}},
        {"name": "sum", "deps": ["fan"]},
    )  # fmt: skip
    precedence = Precedence.of(spec)
    assert [precedence.priority(key) for key in ("plan", "fan.10", "sum")] == [0, 7, 0]
    assert dict(precedence.paths) == {"plan": 3, "fan": 2, "sum": 1}
    assert sorted(["fan.10", "fan.2", "fan.1"], key=natural) == ["fan.1", "fan.2", "fan.10"]


@pytest.mark.parametrize(
    ("dependencies", "paths"),
    [
        ({"a": []}, {"a": 1}),
        ({"a": [], "b": ["a"], "c": ["b"], "d": ["a"]}, {"a": 3, "b": 2, "c": 1, "d": 1}),
        ({"x": [], "y": [], "join": ["x", "y"]}, {"x": 2, "y": 2, "join": 1}),
    ],
)
def test_the_remaining_critical_path_counts_the_tasks_on_the_longest_path_to_the_end(
    dependencies: dict[str, list[str]], paths: dict[str, int]
) -> None:
    assert dag.remaining_path(dependencies) == paths


DEADLINE = T0 + timedelta(seconds=60)


def test_the_deadline_wakes_the_run_then_fails_it_and_stops_its_jobs() -> None:
    cluster = Cluster(
        workflow({"name": "a"}, {"name": "b", "deps": ["a"]}, {"name": "c"},
                 deadline=DEADLINE.isoformat())
    )  # fmt: skip
    assert cluster.step().requeue_after == 60
    cluster.advance(20)
    cluster.succeed("c")
    assert cluster.step().requeue_after == 40
    cluster.advance(40)
    running = cluster.running("a").name
    decision = cluster.step()
    assert [action.name for action in decision.of_type(DeleteJob)] == [running]
    assert (cluster.status.phase, cluster.condition("Failed").reason) == (
        WorkflowPhase.FAILED,
        "DeadlineExceeded",
    )
    assert cluster.status.message == (
        "its deadline 2025-01-01T12:01:00Z passed (spec.deadline); the run was stopped"
    )
    phases = {name: cluster.task(name).phase for name in "abc"}
    assert phases == {"a": TaskPhase.CANCELLED, "b": TaskPhase.SKIPPED, "c": TaskPhase.SUCCEEDED}
    assert cluster.task("a").message == "cancelled: the run's deadline passed"
    assert [e.reason for e in decision.of_type(Event)] == ["WorkflowFailed"]
    assert decision.requeue_after is None


def test_a_run_that_never_started_fails_at_its_deadline_too() -> None:
    cluster = Cluster(workflow({"name": "a"}, deadline="2025-01-01T13:00:01+01:00"), agents={})
    assert cluster.step().requeue_after == 1
    assert cluster.status.phase == WorkflowPhase.PENDING  # waits for its Agent
    cluster.advance(1)
    cluster.agents = {"agent": AgentSpec()}
    decision = cluster.step()
    assert created_tasks(decision) == []
    assert cluster.condition("Failed").reason == "DeadlineExceeded"
    assert "2025-01-01T12:00:01Z" in cluster.status.message
    assert cluster.task("a").phase == TaskPhase.SKIPPED


@pytest.mark.parametrize(
    ("workflow_fields", "task_fields", "problem"),
    [
        ({"priority": 1001}, {}, "less than or equal to 1000"),
        ({}, {"priority": -1001}, "greater than or equal to -1000"),
        ({"deadline": "2025-01-01T12:00:00"}, {}, "timezone"),
    ],
)
def test_priorities_are_bounded_and_a_deadline_has_its_offset(
    workflow_fields: dict[str, Any], task_fields: dict[str, Any], problem: str
) -> None:
    task = {"name": "a", "agent": "x", "prompt": "p", **task_fields}
    with pytest.raises(ValidationError, match=problem):
        WorkflowSpec.model_validate({"tasks": [task], **workflow_fields})


def test_a_template_gives_no_deadline() -> None:
    base = {"tasks": [{"name": "a", "agent": "x", "prompt": "p"}], "priority": 3}
    assert WorkflowTemplateSpec.model_validate(base).priority == 3
    with pytest.raises(ValidationError, match="deadline"):
        WorkflowTemplateSpec.model_validate({**base, "deadline": "2030-01-01T00:00:00Z"})


def test_a_run_retried_after_its_deadline_fails_again_at_once() -> None:
    cluster = Cluster(workflow({"name": "a"}, deadline=DEADLINE.isoformat()))
    cluster.step()
    cluster.advance(60)
    cluster.step()
    cluster.retry_request = "r1"
    decision = cluster.step()
    assert created_tasks(decision) == []
    assert cluster.condition("Failed").reason == "DeadlineExceeded"
    assert [e.reason for e in decision.of_type(Event)] == ["WorkflowRetried", "WorkflowFailed"]
