"""Agents chosen by skill (``agentSelector``) and retries on ``fallbackAgents``: the score,
the fallback order, the static checks, and the core choosing once per attempt."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tests.unit.test_workflow_core import T0, Cluster, created_tasks, workflow
from troupe_operator.api import (
    AgentCallStats,
    AgentSelector,
    AgentSpec,
    ConditionStatus,
    TaskPhase,
    TaskStatus,
    WorkflowStatus,
)
from troupe_operator.spec_checks import check_workflow
from troupe_operator.workflow import AgentProfile, CreateTask, EventType
from troupe_operator.workflow.compaction import fit_status
from troupe_operator.workflow.selection import fallback_agent, rank


def stats(requests: int, errors: int, p50: float | None = 1.0, age: float = 60) -> AgentCallStats:
    return AgentCallStats(
        requests=requests,
        errors=errors,
        latency_p50_seconds=p50,
        reported_by="pod-0",
        updated_at=T0 - timedelta(seconds=age),
    )


def agents(**skills: list[str]) -> dict[str, AgentSpec]:
    return {name: AgentSpec(skills=listed) for name, listed in skills.items()}


@pytest.mark.parametrize(
    ("selector", "found", "profiles", "best_first"),
    [
        ({"skills": ["x", "y"]}, agents(a=["x"], b=["x", "y"], c=["y"]), {}, ["b"]),
        ({"skills": ["x"]}, agents(b=["x", "y"], a=["x"]), {}, ["a", "b"]),
        ({"skills": ["z"]}, agents(a=["x"], b=["x", "y"]), {}, []),
        (
            {"matchLabels": {"tier": "gold"}},
            agents(a=[], b=[], c=[]),
            {"a": {"tier": "gold"}, "b": {"tier": "silver"}},
            ["a"],
        ),
        (  # a good record, none, a poor one
            {"skills": ["x"]},
            agents(a=["x"], b=["x"], c=["x"]),
            {"a": stats(100, 20), "c": stats(100, 1)},
            ["c", "b", "a"],
        ),
        (  # equally reliable in whole percent: the faster wins
            {"skills": ["x"]},
            agents(a=["x"], b=["x"]),
            {"a": stats(1000, 9, p50=2.0), "b": stats(1000, 1, p50=0.5)},
            ["b", "a"],
        ),
        (  # no latency known ranks after a known one
            {"skills": ["x"]},
            agents(a=["x"], b=["x"]),
            {"a": stats(100, 0, p50=None), "b": stats(100, 0, p50=9.0)},
            ["b", "a"],
        ),
        (  # too few calls, or too old: no record, ranked by name at the neutral rate
            {"skills": ["x"]},
            agents(c=["x"], b=["x"], a=["x"]),
            {"b": stats(4, 0), "c": stats(100, 0, age=7200), "a": stats(100, 50)},
            ["b", "c", "a"],
        ),
    ],
    ids=["skills", "by-name", "none", "labels", "records", "latency", "no-latency", "stale"],
)
def test_the_best_matching_agent_ranks_first(
    selector: dict[str, Any],
    found: dict[str, AgentSpec],
    profiles: dict[str, Any],
    best_first: list[str],
) -> None:
    known = {
        name: AgentProfile(calls=value)
        if isinstance(value, AgentCallStats)
        else AgentProfile(labels=value)
        for name, value in profiles.items()
    }
    assert rank(AgentSelector.model_validate(selector), found, known, T0) == best_first


@pytest.mark.parametrize(
    ("fallbacks", "by_attempt"),
    [
        ([], [None, None, None, None]),
        (["b"], [None, "b", "b", "b"]),
        (["b", "c"], [None, "b", "c", "c"]),
    ],
)
def test_retries_run_on_the_fallbacks_in_order_and_stay_on_the_last(
    fallbacks: list[str], by_attempt: list[str | None]
) -> None:
    task = workflow({"name": "t", "fallbackAgents": fallbacks}).tasks[0]
    assert [fallback_agent(task, attempt) for attempt in range(1, 5)] == by_attempt


@pytest.mark.parametrize(
    ("task", "problem"),
    [
        ({"agent": "a", "agentSelector": {"skills": ["x"]}}, "gives both agent and agentSelector"),
        ({}, "gives neither agent nor agentSelector: give exactly one"),
        ({"agentSelector": {}}, "agentSelector is empty: give skills or matchLabels"),
        ({"agentSelector": {"skills": ["x", "x"]}}, "lists a skill more than once"),
        ({"agent": "a", "fallbackAgents": ["b", "b"]}, "lists fallback agent 'b' 2 times"),
        ({"agent": "a", "fallbackAgents": ["a"]}, "lists its own agent 'a' among"),
        ({"agent": "a", "fallbackAgents": ["gone"]}, "uses agent 'gone', which is not defined"),
    ],
)
def test_agent_fields_are_checked_before_the_run(task: dict[str, Any], problem: str) -> None:
    spec = workflow({"name": "t"}).model_copy()
    spec.tasks[0] = spec.tasks[0].model_validate({"name": "t", "prompt": "p", **task})
    problems = check_workflow("wf", spec, known_agents={"a", "b"})
    assert any(problem in line for line in problems), problems


def test_a_valid_selector_and_fallbacks_pass_the_checks() -> None:
    spec = workflow({"name": "t", "agentSelector": {"skills": ["x"]}, "fallbackAgents": ["a", "b"]})
    assert check_workflow("wf", spec, known_agents={"a", "b"}) == []


# -- the core: chosen when an attempt starts, recorded, never chosen again ----------------


SELECT_XY = workflow({"name": "t", "agentSelector": {"skills": ["x", "y"]}, "retries": 1})


def test_a_selector_runs_the_task_on_the_agent_with_every_skill() -> None:
    cluster = Cluster(SELECT_XY, agents=agents(a=["x"], b=["x", "y"]))
    decision = cluster.step()
    [action] = decision.of_type(CreateTask)
    assert action.task_input.agent_name == "b"
    assert action.task_input.agent.skills == ["x", "y"]
    assert cluster.task("t").agents == ["b"]
    cluster.succeed("t")
    cluster.step()
    assert cluster.task("t").agents == ["b"]


def test_no_matching_agent_waits_with_a_reason_and_starts_when_one_appears() -> None:
    spec = workflow({"name": "t", "agentSelector": {"skills": ["z"]}})
    cluster = Cluster(spec, agents=agents(a=["x"]))
    decision = cluster.step()
    assert created_tasks(decision) == []
    assert dict(decision.waiting) == {"t": "NoMatchingAgent"}
    assert decision.waiting_for_any_agent and not decision.waiting_for_agents
    ready = cluster.condition("Ready")
    assert (ready.status, ready.reason) == (ConditionStatus.FALSE, "NoMatchingAgent")
    assert ready.message == (
        "waiting for an Agent with skills [z] in namespace 'team' (needed by 1 ready task(s))"
    )
    cluster.step()
    [warning] = cluster.events_of("NoMatchingAgent")
    assert warning.type == EventType.WARNING

    cluster.agents = agents(a=["x"], c=["z"])
    assert created_tasks(cluster.step()) == [("t", 1)]
    assert cluster.task("t").agents == ["c"]
    assert cluster.condition("Ready").status == ConditionStatus.TRUE


def test_a_retry_after_a_retryable_failure_runs_on_the_fallbacks() -> None:
    spec = workflow({"name": "t", "agent": "primary", "fallbackAgents": ["backup"], "retries": 2})
    cluster = Cluster(spec, agents=agents(primary=[], backup=[]))
    cluster.step()
    cluster.fail("t", "HTTP 503")
    decision = cluster.step()
    assert [a.task_input.agent_name for a in decision.of_type(CreateTask)] == ["backup"]
    cluster.fail("t", "HTTP 503")
    cluster.step()
    assert cluster.task("t").agents == ["primary", "backup", "backup"]
    cluster.succeed("t")
    cluster.step()
    assert cluster.task("t").phase == "Succeeded"
    assert cluster.task("t").agents == ["primary", "backup", "backup"]


def test_a_missing_fallback_waits_as_a_missing_agent() -> None:
    spec = workflow({"name": "t", "agent": "primary", "fallbackAgents": ["backup"], "retries": 1})
    cluster = Cluster(spec, agents=agents(primary=[]))
    cluster.step()
    cluster.fail("t")
    decision = cluster.step()
    assert created_tasks(decision) == []
    assert decision.waiting_for_agents == {"backup"}
    assert cluster.condition("Ready").reason == "AgentNotFound"


def test_a_started_attempt_keeps_its_agent_and_a_retry_chooses_again() -> None:
    cluster = Cluster(SELECT_XY, agents=agents(a=["x", "y"]))
    cluster.step()
    cluster.agents = agents(a=["x", "y"], b=["x", "y"])
    cluster.profiles = {"a": AgentProfile(calls=stats(100, 50)), "b": AgentProfile()}
    assert created_tasks(cluster.step()) == []
    assert cluster.task("t").agents == ["a"]
    cluster.fail("t")
    assert created_tasks(cluster.step()) == [("t", 2)]
    assert cluster.task("t").agents == ["a", "b"]


def test_an_agent_whose_status_write_was_lost_is_read_back_from_its_job() -> None:
    cluster = Cluster(SELECT_XY, agents=agents(a=["x", "y"]))
    cluster.step()
    lost = cluster.task("t").model_copy(update={"agents": [], "attempts": 0, "phase": "Pending"})
    cluster.status = cluster.status.model_copy(update={"tasks": {"t": lost}})
    cluster.agents = agents(b=["x", "y"])  # what would be chosen now is not what runs
    assert created_tasks(cluster.step()) == []
    assert cluster.task("t").agents == ["a"]


def test_slimming_keeps_the_last_agent_unless_every_attempt_ran_on_the_tasks_own() -> None:
    spec = workflow(
        {"name": "own"},
        {"name": "fell-back", "fallbackAgents": ["backup"]},
        {"name": "chosen", "agentSelector": {"skills": ["x"]}},
    )
    ran = {"own": ["agent", "agent"], "fell-back": ["agent", "backup"], "chosen": ["b", "c"]}
    tasks = {
        name: TaskStatus(phase=TaskPhase.SUCCEEDED, attempts=2, agents=agents)
        for name, agents in ran.items()
    }
    slim = fit_status(WorkflowStatus(tasks=tasks), budget=1, specs={t.name: t for t in spec.tasks})
    assert {name: task.agents for name, task in slim.tasks.items()} == {
        "own": None,
        "fell-back": ["backup"],
        "chosen": ["c"],
    }
