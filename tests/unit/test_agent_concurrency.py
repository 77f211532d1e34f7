"""An Agent's model.maxConcurrency: the AIMD rule, the core holding attempts back, the gate's
counting and sharing across Workflows, the shell's caps and what it shows."""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from tests.unit.test_workflow_core import Cluster, created_tasks, workflow
from troupe_operator.agents.aimd import Aimd
from troupe_operator.api import AgentSpec, ModelSpec, TaskReport, TaskResult, WorkflowStatus
from troupe_operator.controller.agent_concurrency import ADJUSTED, Concurrency
from troupe_operator.controller.agent_limits import AgentGate
from troupe_operator.workflow import (
    Decision,
    JobState,
    Observation,
    ObservedJob,
)

A, B = ("team", "a"), ("team", "b")


def capped(most: int, adaptive: bool = False) -> AgentSpec:
    return AgentSpec(model=ModelSpec(max_concurrency=most, adaptive_concurrency=adaptive))


def report(failed: dict[str, int] | None = None, calls: int = 1) -> TaskReport:
    result = TaskResult(model="m", calls=calls, failed_calls=failed or {})
    return TaskReport(succeeded=True, result=result)


THROTTLED, CLEAN, SILENT = report({"429": 2}), report(), TaskReport(succeeded=False)


# -- AIMD -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limit", "reports", "expected"),
    [
        # (report, now, started) -> effective after each
        (8, [(THROTTLED, 0, None)], [4]),
        # One overload: the reports of attempts started before the halving halve once.
        (8, [(THROTTLED, 0, None), (THROTTLED, 1, -5), (THROTTLED, 2, -1)], [4, 4, 4]),
        # Started after it: a new overload halves again; never below 1.
        (8, [(THROTTLED, 0, None), (THROTTLED, 1, 0.5), (THROTTLED, 2, 1.5)], [4, 2, 1]),
        # Start unknown: once per window.
        (8, [(THROTTLED, 0, None), (THROTTLED, 5, None), (THROTTLED, 10, None)], [4, 4, 2]),
        # Timeouts count as throttling; other failures do not.
        (4, [(report({"timeout": 1}), 0, None), (report({"500": 3}), 20, None)], [2, 2]),
        # Additive increase: one step per round of as many clean reports as the cap...
        (
            8,
            [(THROTTLED, 0, None)] + [(CLEAN, t, t) for t in range(1, 10)],
            [4] + [4] * 3 + [5] + [5] * 4 + [6],
        ),
        # ... but back to where it was last throttled (4 here) only after 4 rounds (4 x 3
        # reports), and past it after 4 more (4 x 4); then that is forgotten: one round a step.
        (
            8,
            [(THROTTLED, 0, None), (THROTTLED, 1, 0.5)] + [(CLEAN, t, t) for t in range(2, 37)],
            [4, 2, 2, 3] + [3] * 11 + [4] + [4] * 15 + [5] + [5] * 4 + [6],
        ),
        # Never above the limit; a report without calls says nothing.
        (2, [(CLEAN, 1, 1), (CLEAN, 2, 2), (SILENT, 3, 3), (report(calls=0), 4, 4)], [2] * 4),
    ],
)
def test_aimd_halves_once_per_overload_and_adds_one_per_clean_round(
    limit: int, reports: list[tuple[TaskReport, float, float | None]], expected: list[int]
) -> None:
    aimd = Aimd.start(limit)
    seen = []
    for index, (body, now, started) in enumerate(reports):
        aimd.report(f"job-{index}", body, now, started)
        seen.append(aimd.effective)
    assert seen == expected


def test_aimd_counts_a_report_once_and_starts_from_what_status_kept() -> None:
    aimd = Aimd.start(8, kept=3)
    assert aimd.effective == 3
    assert aimd.report("job", THROTTLED, 0) is not None
    assert aimd.report("job", THROTTLED, 100) is None  # read again at the next reconcile
    assert aimd.effective == 2  # halved, rounded up
    assert Aimd.start(4, kept=9).effective == 4
    aimd.relimit(1)
    assert (aimd.limit, aimd.effective) == (1, 1)


def test_adaptive_concurrency_needs_a_cap() -> None:
    with pytest.raises(ValidationError, match=r"adaptiveConcurrency needs model.maxConcurrency"):
        ModelSpec.model_validate({"adaptiveConcurrency": True})
    with pytest.raises(ValidationError):
        ModelSpec.model_validate({"maxConcurrency": 0})


# -- the core -------------------------------------------------------------------


class AgentCluster(Cluster):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.agent_slots: dict[str, int] = {}

    def observe(self) -> Observation:
        return replace(super().observe(), agent_slots=self.agent_slots)


def test_an_agent_without_free_slots_holds_its_attempts_back_with_a_reason_and_one_event() -> None:
    agents = {"agent": capped(2), "free": AgentSpec()}
    tasks = [{"name": f"t{i}"} for i in range(4)] + [{"name": "other", "agent": "free"}]
    cluster = AgentCluster(workflow(*tasks), agents)
    cluster.agent_slots = {"agent": 1}
    decision = cluster.step()
    assert sorted(created_tasks(decision)) == [("other", 1), ("t0", 1)]
    assert decision.held_by_agent == {"agent": 3}
    assert decision.waiting == dict.fromkeys(("t1", "t2", "t3"), "AgentConcurrencyLimit")
    assert cluster.condition("Ready").reason == "AgentConcurrencyLimit"
    assert cluster.status.message == (
        "ready tasks wait for a slot of their Agent (agent at most 2 task attempts at once "
        "across the namespace's Workflows; model.maxConcurrency)"
    )
    # No Event, as for a Tenant's cap: a run under contention is held and released once per
    # slot it gets (bench/controller.py's agent scenario: 0.9 Events a task more with one).
    assert cluster.events_of("AgentConcurrencyLimit") == []
    t1 = cluster.status.tasks["t1"]
    assert (t1.phase, t1.waiting and t1.waiting.reason) == ("Pending", "AgentConcurrencyLimit")

    cluster.agent_slots = {"agent": 0}  # t0 runs on the Agent's other slot
    assert created_tasks(cluster.step()) == []  # still held

    cluster.agent_slots = {"agent": 3}
    decision = cluster.step()
    assert created_tasks(decision) == [("t1", 1), ("t2", 1), ("t3", 1)]
    assert decision.held_by_agent == {}
    assert cluster.condition("Ready").reason == "Running"


# -- the gate -------------------------------------------------------------------


class Gate:
    def __init__(self, caps: dict[str, int | None]) -> None:
        self.active: dict[tuple[str, str], list[tuple[str, str]]] = {}
        self.created: dict[tuple[str, str], dict[str, str | None]] = {}
        self.caps = caps
        self.woken: list[tuple[str, str]] = []
        ticks = itertools.count()
        self.gate = AgentGate(
            self.active,
            lambda ns: {k: v for k, v in self.created.items() if k[0] == ns},
            lambda ns, agent: self.caps.get(agent),
            self.woken.append,
            clock=lambda: float(next(ticks)),
        )


def held(agent: str, count: int) -> Decision:
    return Decision(WorkflowStatus(), held_by_agent={agent: count})


def test_the_gate_counts_jobs_seen_created_and_being_created_per_agent() -> None:
    gate = Gate({"w": 4, "x": None})
    gate.active[("team", "w")] = [("a", "a-1")]
    gate.active[("other", "w")] = [("z", "z-1")]  # another namespace's Agent of that name
    gate.created[A] = {"a-1": "w", "a-2": "w", "a-3": "v"}  # a-1 seen and created: once
    gate.gate.reserve(B, Counter({"w": 1}))
    assert gate.gate.running("team", "w") == 3
    assert gate.gate.slots(B, ["w", "x", "v"]) == {"w": 1}  # x and v have no cap
    gate.gate.release(B, Counter({"w": 1}))
    assert gate.gate.running("team", "w") == 2


def test_two_runs_share_an_agents_slots_fairly_and_the_held_one_is_woken() -> None:
    gate = Gate({"w": 2})
    assert gate.gate.slots(A, ["w"]) == {"w": 2}
    gate.gate.reserve(A, Counter({"w": 1}))  # a takes one, b asks meanwhile
    assert gate.gate.slots(B, ["w"]) == {"w": 1}
    gate.gate.release(A, Counter({"w": 1}))
    gate.created[A] = {"a-1": "w"}
    gate.created[B] = {"b-1": "w"}
    gate.gate.decided(A, held("w", 4))
    gate.gate.decided(B, held("w", 4))
    assert gate.gate.slots(A, ["w"]) == {"w": 0}
    gate.created[A] = {}  # a's attempt ended: the slot is a's or b's, fairly
    gate.gate.slots_freed("team")
    assert gate.woken[-1:] == [A]
    assert gate.gate.slots(A, ["w"]) == {"w": 1}
    gate.gate.forget(A)
    gate.gate.forget(B)
    assert gate.gate.slots(B, ["w"]) == {"w": 1}


# -- the shell's caps -----------------------------------------------------------


def finished(name: str, body: TaskReport, started: datetime | None = None) -> ObservedJob:
    return ObservedJob(name, "t", 1, JobState.SUCCEEDED, started_at=started, report=body, agent="w")


def test_the_cap_is_max_concurrency_unless_adaptive_then_it_follows_reports() -> None:
    ticks = itertools.count(step=10)
    concurrency = Concurrency(
        {("team", "w"): [4]},
        running=lambda ns, agent: 1,
        clock=lambda: float(next(ticks)),
        wall=lambda: datetime(2026, 1, 1, tzinfo=UTC),
    )
    key = ("team", "w")
    assert concurrency.cap(key, AgentSpec()) is None
    assert concurrency.cap(key, capped(5)) == 5
    [(_, status, event)] = concurrency.due()
    assert (status.limit, status.effective, status.running, event) == (5, 5, 1, None)
    concurrency.written(key, status)
    assert concurrency.due() == []

    adaptive = {"w": capped(5, adaptive=True)}
    assert concurrency.cap(key, adaptive["w"]) == 4  # what status kept
    concurrency.finished("team", [finished("j1", THROTTLED)], adaptive)
    concurrency.finished("team", [finished("j1", THROTTLED)], adaptive)  # read again
    assert concurrency.cap(key, adaptive["w"]) == 2
    [(_, status, event)] = concurrency.due()
    assert (status.effective, status.reason) == (
        2,
        "concurrency cap 4 -> 2 of 5: a task reported 429s or timeouts",
    )
    assert event is not None and event.reason == ADJUSTED
    concurrency.written(key, status)
    later = datetime(2026, 1, 2, tzinfo=UTC)
    concurrency.finished("team", [finished(j, CLEAN, later) for j in ("j2", "j3")], adaptive)
    [(_, status, event)] = concurrency.due()
    assert (status.effective, event) == (3, None)  # one Event per 30 s at most: it waits
    concurrency.written(key, status)
    assert concurrency.due() == []  # 20 s after the last Event
    [(_, status, event)] = concurrency.due()  # 30 s after it: the Event of the latest change
    assert event is not None and event.message == (
        "concurrency cap 2 -> 3 of 5: a round of tasks ran without throttling"
    )
