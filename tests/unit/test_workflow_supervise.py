"""The supervisor loop (``supervise``) in the core: turns and delegations as units, every
decision recorded in status once, the loop's limits, and restarts that lose status writes."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import pytest

from tests.unit.test_workflow_core import RUN, Cluster, created_tasks, result, workflow
from troupe_operator.api import (
    AgentSpec,
    InstructionRef,
    SupervisedDelegation,
    SupervisorTurn,
    TaskPhase,
    TaskReport,
    TurnDecision,
    TurnRefs,
    WorkflowPhase,
)
from troupe_operator.spec_checks import check_workflow
from troupe_operator.workflow import CreateTask, JobState, PrepareRun, reconcile
from troupe_operator.workflow.units import possible_units

AGENTS = {name: AgentSpec() for name in ("agent", "lead", "math", "writer")}


def supervised(
    max_iterations: int = 10, max_concurrent: int = 3, retries: int = 0
) -> list[dict[str, Any]]:
    """brief → research (a supervisor over math and writer) → report."""
    return [
        {"name": "brief"},
        {
            "name": "research",
            "agent": None,
            "deps": ["brief"],
            "prompt": "Answer {{ inputs.topic }} from {{ tasks.brief.output }}",
            "retries": retries,
            "supervise": {
                "agent": "lead",
                "members": ["math", "writer"],
                "maxIterations": max_iterations,
                "maxConcurrent": max_concurrent,
            },
        },
        {"name": "report", "deps": ["research"], "prompt": "Report {{ tasks.research.output }}"},
    ]


def loop(**settings: Any) -> Cluster:
    """A cluster whose run has finished ``brief`` and started the first turn."""
    cluster = Cluster(workflow(*supervised(**settings)), agents=AGENTS)
    cluster.step()
    cluster.succeed("brief")
    cluster.step()
    return cluster


def decide(cluster: Cluster, turn: str, *members: str, finished: bool = False) -> None:
    """The running turn ``turn`` succeeds, reporting its decision."""
    job = cluster.running(turn)
    decision = TurnDecision(members=list(members), finished=finished)
    report = TaskReport(succeeded=True, result=result(3, 10), preview="d", decision=decision)
    cluster.jobs[job.name] = replace(
        job, state=JobState.SUCCEEDED, finished_at=cluster.now, report=report
    )


def turns(cluster: Cluster) -> list[SupervisorTurn]:
    record = cluster.task("research").supervise
    assert record is not None and record.iterations == len(record.turns)
    return record.turns


def test_a_supervisor_delegates_to_math_then_writer_then_finishes() -> None:
    cluster = loop()
    [first] = cluster.last.of_type(CreateTask)
    assert (first.task, first.task_input.agent_name) == ("research.turn-1", "lead")
    assert first.task_input.task == "research" and first.task_input.instance == "research.turn-1"
    assert first.task_input.upstream == {"brief": RUN.output_config_map("brief")}
    assert first.task_input.supervise is not None and first.task_input.supervise.history == []
    assert cluster.task("research").phase == TaskPhase.RUNNING

    decide(cluster, "research.turn-1", "math")
    [math] = cluster.step().of_type(CreateTask)
    assert (math.task, math.task_input.agent_name) == ("research.turn-1.1", "math")
    assert math.task_input.supervise.instruction == InstructionRef(
        turn="research.turn-1", decision=RUN.output_config_map("research.turn-1"), index=0
    )
    assert cluster.task("research.turn-1").decision == TurnDecision(members=["math"])
    cluster.succeed("research.turn-1.1")
    [second] = cluster.step().of_type(CreateTask)
    assert second.task == "research.turn-2"
    assert second.task_input.supervise.history == [
        TurnRefs(
            turn="research.turn-1",
            decision=RUN.output_config_map("research.turn-1"),
            outputs=[RUN.output_config_map("research.turn-1.1")],
        )
    ]
    decide(cluster, "research.turn-2", "writer")
    assert created_tasks(cluster.step()) == [("research.turn-2.1", 1)]
    cluster.succeed("research.turn-2.1")
    assert created_tasks(cluster.step()) == [("research.turn-3", 1)]
    assert len(cluster.step().of_type(CreateTask)) == 0  # nothing is decided twice
    decide(cluster, "research.turn-3", finished=True)
    [report] = cluster.step().of_type(CreateTask)
    assert report.task_input.upstream == {"research": RUN.output_config_map("research.turn-3")}

    research = cluster.task("research")
    assert (research.phase, research.result_of) == (TaskPhase.SUCCEEDED, "research.turn-3")
    assert research.message == "the supervisor finished at turn 3 of at most 10"
    assert research.usage is None and research.attempts == 0  # tokens stay on the units
    assert turns(cluster) == [
        SupervisorTurn(
            unit="research.turn-1",
            delegations=[SupervisedDelegation(member="math", unit="research.turn-1.1")],
        ),
        SupervisorTurn(
            unit="research.turn-2",
            delegations=[SupervisedDelegation(member="writer", unit="research.turn-2.1")],
        ),
        SupervisorTurn(unit="research.turn-3", finished=True),
    ]
    assert [e.message for e in cluster.events_of("TurnDecided")] == [
        "task 'research' turn 1 delegated to math",
        "task 'research' turn 2 delegated to writer",
        "task 'research' turn 3 finished",
    ]
    cluster.succeed("report")
    cluster.step()
    assert cluster.status.phase == WorkflowPhase.SUCCEEDED
    assert cluster.status.progress == "3/3"
    assert cluster.status.usage is not None and cluster.status.usage.total_tokens == 3 * 6 + 4 * 20


def test_a_supervisor_that_never_finishes_fails_at_max_iterations() -> None:
    cluster = loop(max_iterations=2)
    decide(cluster, "research.turn-1", "math", "writer")
    assert created_tasks(cluster.step()) == [("research.turn-1.1", 1), ("research.turn-1.2", 1)]
    cluster.succeed("research.turn-1.1")
    cluster.succeed("research.turn-1.2")
    cluster.step()
    decide(cluster, "research.turn-2", "math")
    assert created_tasks(cluster.step()) == []
    research = cluster.task("research")
    assert (research.phase, research.reason) == (TaskPhase.FAILED, "MaxIterations")
    assert research.message == (
        "the supervisor did not finish within maxIterations=2: turn 2 delegated again "
        "(math), which was not run"
    )
    assert turns(cluster)[-1].delegations == [SupervisedDelegation(member="math")]
    assert "research.turn-2.1" not in cluster.status.tasks
    [failed] = cluster.events_of("TaskFailed")
    assert failed.message.startswith("task 'research' failed: the supervisor did not finish")
    assert cluster.status.phase == WorkflowPhase.FAILED
    assert cluster.task("report").phase == TaskPhase.SKIPPED


@pytest.mark.parametrize(
    ("decision", "message"),
    [
        (
            TurnDecision(members=["math", "stranger"]),
            "turn 'research.turn-1' delegated to 'stranger', not a member (math, writer)",
        ),
        (
            TurnDecision(members=["math", "math", "writer"]),
            "turn 'research.turn-1' delegated 3 steps, more than maxConcurrent (2)",
        ),
        (TurnDecision(), "turn 'research.turn-1' reported neither a delegation nor finish"),
        (
            TurnDecision(members=["math"], finished=True),
            "turn 'research.turn-1' reported both a delegation and finish",
        ),
        (
            None,
            "turn 'research.turn-1' succeeded, but its pod left no report: its decision is unknown",
        ),
    ],
)
def test_a_decision_the_core_cannot_take_fails_the_loop(
    decision: TurnDecision | None, message: str
) -> None:
    cluster = loop(max_concurrent=2)
    job = cluster.running("research.turn-1")
    report = TaskReport(succeeded=True, decision=decision) if decision else None
    cluster.jobs[job.name] = replace(job, state=JobState.SUCCEEDED, report=report)
    assert created_tasks(cluster.step()) == []
    research = cluster.task("research")
    assert (research.phase, research.reason, research.message) == (
        TaskPhase.FAILED,
        "InvalidDecision",
        message,
    )


def test_a_failed_delegation_fails_the_loop_once_its_turn_is_done() -> None:
    cluster = loop(retries=1)
    decide(cluster, "research.turn-1", "math", "writer")
    cluster.step()
    cluster.fail("research.turn-1.1")
    assert created_tasks(cluster.step()) == [("research.turn-1.1", 2)]  # the unit's retries
    cluster.fail("research.turn-1.1", "HTTP 500")
    cluster.step()
    research = cluster.task("research")
    assert research.phase == TaskPhase.RUNNING  # its sibling still runs
    assert research.message == "turn 1: 1 of 2 delegations finished"
    cluster.succeed("research.turn-1.2")
    assert created_tasks(cluster.step()) == []
    research = cluster.task("research")
    assert (research.phase, research.reason) == (TaskPhase.FAILED, "DelegationFailed")
    assert research.message == (
        "delegation 'research.turn-1.1' to member 'math' failed: attempt 2 failed: HTTP 500; "
        "the supervisor loop stops"
    )


def test_a_failed_turn_fails_the_loop() -> None:
    cluster = loop()
    cluster.fail("research.turn-1", "the supervisor chose 'x', not a member")
    cluster.step()
    research = cluster.task("research")
    assert (research.phase, research.reason) == (TaskPhase.FAILED, "TurnFailed")
    assert research.message == (
        "turn 'research.turn-1' failed: attempt 1 failed: the supervisor chose 'x', not a member"
    )


def test_a_restart_that_lost_status_writes_adopts_the_jobs_and_decides_the_same() -> None:
    cluster = loop()
    decide(cluster, "research.turn-1", "math")
    before = cluster.status
    cluster.step()  # recorded the decision and created research.turn-1.1 ...
    cluster.succeed("research.turn-1.1")
    cluster.status = before  # ... but that status write (and the next) were lost
    decision = cluster.step()
    assert created_tasks(decision) == [("research.turn-2", 1)]
    assert [turn.unit for turn in turns(cluster)] == ["research.turn-1", "research.turn-2"]
    assert cluster.task("research.turn-1.1").phase == TaskPhase.SUCCEEDED
    assert reconcile(cluster.observe()).of_type(CreateTask) == []


def test_the_run_may_write_exactly_the_outputs_of_its_possible_units() -> None:
    spec = workflow(*supervised(max_iterations=3, max_concurrent=2))
    keys = list(possible_units(spec))
    assert keys == [
        "brief",
        "research.turn-1",
        "research.turn-1.1",
        "research.turn-1.2",
        "research.turn-2",
        "research.turn-2.1",
        "research.turn-2.2",
        "research.turn-3",
        "report",
    ]
    [prepare] = Cluster(spec, agents=AGENTS).step().of_type(PrepareRun)
    assert set(prepare.outputs) == {RUN.output_config_map(key) for key in keys}


def with_research(**changes: Any) -> list[dict[str, Any]]:
    tasks = supervised()
    tasks[1] = {**tasks[1], **changes}
    return tasks


@pytest.mark.parametrize(
    ("tasks", "problem"),
    [
        (with_research(agent="lead"), "has agent or agentSelector and supervise"),
        ([{"name": "t", "agent": None}], "task 't' gives neither agent nor agentSelector"),
        (
            with_research(outputSchema={"type": "object"}),
            "supervise cannot be combined with outputSchema or forEach",
        ),
        (
            with_research(name="r" * 54, deps=[]),
            "the name of a supervise task is at most 53 characters",
        ),
        (
            with_research(supervise={"agent": "lead", "members": ["math", "math"]}),
            "supervise.members lists math more than once",
        ),
        (
            with_research(supervise={"agent": "boss", "members": ["math", "poet"]}),
            "task 'research' uses agent 'poet', which is not defined",
        ),
    ],
)
def test_static_checks_of_supervise_tasks(tasks: list[dict[str, Any]], problem: str) -> None:
    problems = check_workflow("wf", workflow(*tasks), known_agents=AGENTS)
    assert any(problem in line for line in problems), problems


def test_a_supervise_task_without_an_agent_of_its_own_is_valid() -> None:
    assert check_workflow("wf", workflow(*supervised()), known_agents=AGENTS) == []


@pytest.mark.parametrize("seed", range(40))
def test_random_loops_never_run_a_unit_twice_nor_more_than_max_concurrent_at_once(
    seed: int,
) -> None:
    """Random decisions and finishing orders, with status writes randomly lost (a restart)."""
    chooser = random.Random(seed)
    width = chooser.randint(1, 3)
    cluster = loop(max_iterations=chooser.randint(1, 4), max_concurrent=width)
    for _ in range(200):
        before = cluster.status
        decision = cluster.step()
        for action in decision.of_type(CreateTask):
            assert action.attempt == 1, "a unit ran twice"
        active = [j for j in cluster.jobs.values() if j.state == JobState.ACTIVE]
        assert sum(1 for job in active if job.task.count(".") == 2) <= width
        if cluster.status.phase in (WorkflowPhase.SUCCEEDED, WorkflowPhase.FAILED):
            break
        if chooser.random() < 0.2:
            cluster.status = before
        for job in active:
            if chooser.random() < 0.5:
                continue
            if job.task.startswith("research.turn-") and job.task.count(".") == 1:
                count = chooser.randint(0, width)
                members = chooser.choices(["math", "writer"], k=count)
                decide(cluster, job.task, *members, finished=not members)
            else:
                cluster.succeed(job.task)
        cluster.advance(1)
    assert cluster.status.phase in (WorkflowPhase.SUCCEEDED, WorkflowPhase.FAILED)
    research = cluster.task("research")
    if research.phase == TaskPhase.FAILED:
        assert research.reason == "MaxIterations"
    else:
        assert research.result_of == turns(cluster)[-1].unit
