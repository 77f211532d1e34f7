"""forEach in the core: static checks, expansion recorded once, instances as units, the
fan-in downstream, bounds, and random DAGs with conditions and fan-outs."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.test_workflow_core import RUN, Cluster, created_tasks, workflow
from troupe_operator.api import TaskPhase, WorkflowPhase, WorkflowSpec
from troupe_operator.spec_checks import check_workflow
from troupe_operator.workflow import CreateTask, JobState, PrepareRun, reconcile

TOPICS = {
    "type": "object",
    "properties": {
        "topics": {"type": "array", "items": {"type": "string"}},
        "n": {"type": "integer"},
    },
}


def research(**for_each: Any) -> WorkflowSpec:
    return workflow(
        {"name": "plan", "outputSchema": TOPICS},
        {
            "name": "research",
            "deps": ["plan"],
            "prompt": "Research {{ item }}",
            "forEach": {"from": "tasks.plan.json.topics", **for_each},
        },
        {"name": "join", "deps": ["research"], "prompt": "Join {{ tasks.research.output }}"},
    )


@pytest.mark.parametrize(
    ("tasks", "problem"),
    [
        (
            [
                {"name": "a", "outputSchema": TOPICS},
                {"name": "b", "forEach": {"from": "tasks.a.json.topics"}},
            ],
            "task 'b' forEach.from tasks.a.json.topics: task 'a' is not upstream of it",
        ),
        (
            [
                {"name": "a"},
                {"name": "b", "deps": ["a"], "forEach": {"from": "tasks.a.json.topics"}},
            ],
            "task 'a' has no outputSchema",
        ),
        (
            [
                {"name": "a", "outputSchema": TOPICS},
                {"name": "b", "deps": ["a"], "forEach": {"from": "tasks.a.json.n"}},
            ],
            "the outputSchema of 'a' must declare it type: array",
        ),
        (
            [
                {"name": "a", "outputSchema": TOPICS},
                {"name": "b", "deps": ["a"], "forEach": {"from": "tasks.a.json.nope"}},
            ],
            "the outputSchema of 'a' declares no such field",
        ),
        ([{"name": "a", "prompt": "About {{ item }}"}], "uses item, which only forEach tasks have"),
        (
            [
                {"name": "a", "outputSchema": TOPICS},
                {"name": "b" * 61, "deps": ["a"], "forEach": {"from": "tasks.a.json.topics"}},
            ],
            "must fit 63 characters; shorten it by",
        ),
        (
            [
                {"name": "a", "outputSchema": TOPICS},
                *(
                    {
                        "name": f"b{i}",
                        "deps": ["a"],
                        "forEach": {"from": "tasks.a.json.topics", "maxItems": 100},
                    }
                    for i in range(10)
                ),
            ],
            "the run may have 1001 tasks and forEach instances",
        ),
        (
            [
                {"name": "a", "outputSchema": TOPICS},
                {
                    "name": "b",
                    "deps": ["a"],
                    "outputSchema": TOPICS,
                    "forEach": {"from": "tasks.a.json.topics"},
                },
                {"name": "c", "deps": ["b"], "when": "tasks.b.json.n == 1"},
            ],
            "task 'b' is a forEach task, whose instances' fields conditions cannot read",
        ),
    ],
)
def test_static_checks_of_for_each(tasks: list[dict[str, Any]], problem: str) -> None:
    problems = check_workflow("wf", workflow(*tasks))
    assert any(problem in line for line in problems), problems


def test_a_for_each_expands_once_into_instances_that_respect_its_parallelism() -> None:
    cluster = Cluster(research(parallelism=2))
    prepare = cluster.step().of_type(PrepareRun)[0]
    assert len(prepare.outputs) == 2 + 20  # plan, join and maxItems instances
    cluster.succeed("plan", counts={"topics": 3})
    decision = cluster.step()
    assert created_tasks(decision) == [("research.0", 1), ("research.1", 1)]
    assert [e.message for e in cluster.events_of("TaskExpanded")] == [
        "task 'research' expanded into 3 instance(s)"
    ]
    first = decision.of_type(CreateTask)[0].task_input
    assert (first.task, first.instance, first.item and first.item.index) == (
        "research",
        "research.0",
        0,
    )
    assert first.upstream == {"plan": RUN.output_config_map("plan")}
    assert cluster.task("research").items == 3
    assert cluster.task("research.2").phase == TaskPhase.PENDING
    restarted = Cluster(cluster.recorded or research())  # a new operator: same status and Jobs
    restarted.status, restarted.jobs, restarted.recorded = (
        cluster.status,
        cluster.jobs,
        cluster.recorded,
    )
    assert created_tasks(restarted.step()) == []  # two running: none more, none twice
    cluster.succeed("research.0")
    assert created_tasks(cluster.step()) == [("research.2", 1)]
    cluster.succeed("research.1")
    cluster.succeed("research.2")
    [join] = cluster.step().of_type(CreateTask)
    assert join.task_input.fan_in == {
        "research": [RUN.output_config_map(f"research.{i}") for i in range(3)]
    }
    assert cluster.task("research").phase == TaskPhase.SUCCEEDED
    cluster.succeed("join")
    cluster.step()
    assert (cluster.status.phase, cluster.status.progress) == (WorkflowPhase.SUCCEEDED, "3/3")
    assert cluster.status.usage and cluster.status.usage.total_tokens == 5 * 20


def test_instance_names_never_collide_with_a_task_named_alike() -> None:
    assert RUN.job_name("research.0", 1) != RUN.job_name("research-0", 1)
    assert RUN.output_config_map("research.0") != RUN.output_config_map("research-0")
    assert RUN.job_name("research.0", 1).startswith("wf-research-0-")


@pytest.mark.parametrize(
    ("counts", "phase", "reason", "message"),
    [
        (
            {"topics": 21},
            TaskPhase.FAILED,
            "TooManyItems",
            "has 21 items, more than forEach.maxItems (20)",
        ),
        ({}, TaskPhase.FAILED, "TooManyItems", "reported no length for tasks.plan.json.topics"),
        ({"topics": 0}, TaskPhase.SUCCEEDED, None, "the list was empty: no instances ran"),
    ],
)
def test_a_list_too_long_is_refused_and_an_empty_one_runs_nothing(
    counts: dict[str, int], phase: TaskPhase, reason: str | None, message: str
) -> None:
    cluster = Cluster(research())
    cluster.step()
    cluster.succeed("plan", counts=counts)
    decision = cluster.step()
    parent = cluster.task("research")
    assert (parent.phase, parent.reason) == (phase, reason)
    assert message in parent.message
    if phase == TaskPhase.SUCCEEDED:
        [join] = decision.of_type(CreateTask)
        assert join.task_input.fan_in == {"research": []}
    else:
        assert cluster.task("join").phase == TaskPhase.SKIPPED
        assert cluster.status.phase == WorkflowPhase.FAILED


def test_a_failed_instance_fails_its_parent_once_the_others_finished() -> None:
    cluster = Cluster(research())
    cluster.step()
    cluster.succeed("plan", counts={"topics": 2})
    cluster.step()
    cluster.fail("research.0", permanent=True)
    cluster.step()
    assert cluster.task("research").phase == TaskPhase.RUNNING
    cluster.succeed("research.1")
    cluster.step()
    parent = cluster.task("research")
    assert (parent.phase, parent.reason) == (TaskPhase.FAILED, "InstanceFailed")
    assert parent.message.startswith("instance 'research.0' failed: attempt 1 failed")
    assert cluster.task("join").phase == TaskPhase.SKIPPED


# Property test: random DAGs with conditions and fan-outs.

FLAGGED = {
    "type": "object",
    "properties": {"go": {"type": "boolean"}, "items": {"type": "array"}},
}


@st.composite
def fanned_runs(draw: st.DrawFn) -> tuple[WorkflowSpec, dict[str, bool], dict[str, int], int]:
    count = draw(st.integers(1, 6))
    names = [f"t{i}" for i in range(count)]
    tasks: list[dict[str, Any]] = []
    plain: list[str] = []
    for index, name in enumerate(names):
        deps = draw(st.lists(st.sampled_from(names[:index]), unique=True)) if index else []
        task: dict[str, Any] = {"name": name, "deps": deps}
        sources = [d for d in deps if d in plain]
        if sources and draw(st.booleans()):
            source = draw(st.sampled_from(sources))
            limit = draw(st.integers(1, 4))
            parallelism = draw(st.none() | st.integers(1, 2))
            task["forEach"] = {"from": f"tasks.{source}.json.items", "maxItems": limit}
            if parallelism:
                task["forEach"]["parallelism"] = parallelism
        else:
            task["outputSchema"] = FLAGGED
            plain.append(name)
        conditional = [d for d in deps if d in plain]
        if conditional and draw(st.booleans()):
            task["when"] = f"tasks.{draw(st.sampled_from(conditional))}.json.go"
        tasks.append(task)
    spec = workflow(*tasks, parallelism=draw(st.none() | st.integers(1, 3)))
    flags = {name: draw(st.booleans()) for name in names}
    lengths = {name: draw(st.integers(0, 4)) for name in names}
    return spec, flags, lengths, draw(st.integers(0, 2**16))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fanned_runs())
def test_random_dags_with_fan_outs_run_dependencies_first_never_twice_and_terminate(
    run: tuple[WorkflowSpec, dict[str, bool], dict[str, int], int],
) -> None:
    spec, flags, lengths, seed = run
    chooser = random.Random(seed)
    cluster = Cluster(spec)
    tasks = {task.name: task for task in spec.tasks}
    plain = {task.name for task in spec.tasks if task.for_each is None}
    started: set[str] = set()
    for _ in range(200):
        decision = reconcile(cluster.observe())
        running = sum(1 for j in cluster.jobs.values() if j.state == JobState.ACTIVE)
        assert spec.parallelism is None or running + len(decision.of_type(CreateTask)) <= max(
            spec.parallelism, running
        )
        for action in decision.of_type(CreateTask):
            assert action.job_name not in cluster.jobs and action.task not in started
            started.add(action.task)
            task = tasks[action.task.split(".")[0]]
            for dependency in task.depends_on:
                assert decision.status.tasks[dependency].phase in (
                    TaskPhase.SUCCEEDED,
                    TaskPhase.SKIPPED,
                )
            if task.for_each is not None:
                assert int(action.task.split(".")[1]) < (
                    decision.status.tasks[task.name].items or 0
                )
        cluster.step()
        if cluster.status.phase in (WorkflowPhase.SUCCEEDED, WorkflowPhase.FAILED):
            break
        for job in [j for j in cluster.jobs.values() if j.state == JobState.ACTIVE]:
            if chooser.random() < 0.6:
                name = job.task
                if name in plain:
                    cluster.succeed(
                        name, fields={"go": flags[name]}, counts={"items": lengths[name]}
                    )
                else:
                    cluster.succeed(name)
        cluster.advance(1)
    assert cluster.status.phase in (WorkflowPhase.SUCCEEDED, WorkflowPhase.FAILED), "did not finish"
    for name, task in tasks.items():
        status = cluster.status.tasks[name]
        if task.for_each is not None and status.items is not None:
            instances = [k for k in cluster.status.tasks if k.startswith(f"{name}.")]
            assert len(instances) == status.items
        if cluster.status.phase == WorkflowPhase.FAILED:  # only a list over maxItems fails a run
            assert any(t.reason == "TooManyItems" for t in cluster.status.tasks.values())


def test_stopping_a_run_cancels_a_running_for_each_and_its_running_instances() -> None:
    cluster = Cluster(research())
    cluster.step()
    cluster.succeed("plan", counts={"topics": 2})
    cluster.step()
    cluster.stop_request = "enough"
    cluster.step()
    phases = {name: task.phase for name, task in cluster.status.tasks.items()}
    assert phases == {
        "plan": TaskPhase.SUCCEEDED,
        "research": TaskPhase.CANCELLED,
        "research.0": TaskPhase.CANCELLED,
        "research.1": TaskPhase.CANCELLED,
        "join": TaskPhase.SKIPPED,
    }
