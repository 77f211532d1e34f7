"""Sharing a Tenant's task slots: the pure rule, and the gate that counts from the indexes."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest

from troupe_operator.api import TenantLimits, WorkflowStatus
from troupe_operator.controller.tenant_limits import Indexes, TenantGate
from troupe_operator.tenants.slots import AGING_SECONDS, Claim, effective_priority, share
from troupe_operator.workflow import Decision

A, B, C = ("a-dev", "a"), ("a-dev", "b"), ("a-prod", "c")


@pytest.mark.parametrize(
    ("limit", "claims", "expected"),
    [
        # Two runs wanting 5 each, nothing running: one slot each, not both to one.
        (2, {A: Claim(0, 5, 1.0), B: Claim(0, 5, 2.0)}, {A: 1, B: 1}),
        # A slot freed by a's task goes to b, which runs fewer.
        (2, {A: Claim(0, 5, 1.0), B: Claim(1, 5, 2.0)}, {A: 1}),
        (2, {A: Claim(1, 5, 3.0), B: Claim(0, 5, 2.0)}, {B: 1}),
        # Equal standing: the one waiting longer.
        (3, {A: Claim(1, 5, 3.0), B: Claim(1, 5, 2.0)}, {B: 1}),
        # No more than a run wants; none when all slots are taken.
        (4, {A: Claim(0, 1, 1.0), B: Claim(0, 5, 2.0)}, {A: 1, B: 3}),
        (2, {A: Claim(2, 5, 1.0), B: Claim(0, 5, 2.0)}, {}),
        (2, {A: Claim(3, 0, math.inf), B: Claim(0, 5, 2.0)}, {}),
        # Higher priority first, whoever runs more or waited longer; then fairly again.
        (2, {A: Claim(0, 5, 1.0), B: Claim(0, 5, 2.0, priority=3)}, {B: 2}),
        (3, {A: Claim(0, 5, 1.0), B: Claim(1, 1, 2.0, priority=3)}, {B: 1, A: 1}),
        (3, {A: Claim(0, 5, 1.0, -1), B: Claim(0, 5, 2.0, -1)}, {A: 2, B: 1}),
    ],
)
def test_free_slots_go_by_priority_then_to_who_runs_fewest_then_who_waited_longest(
    limit: int, claims: dict[tuple[str, str], Claim], expected: dict[tuple[str, str], int]
) -> None:
    assert share(limit, claims, now=3.0) == expected


@pytest.mark.parametrize(
    ("priority", "since", "now", "effective"),
    [
        (0, 0.0, 14.9, 0),
        (0, 0.0, 15.0, 1),
        (5, 100.0, 100.0 + 10 * AGING_SECONDS, 15),
        (-1000, 0.0, 10**9, 1000),  # never beyond the highest priority
        (1000, 0.0, 10**9, 1000),
        (7, math.inf, 50.0, 7),  # a claim that does not wait does not age
    ],
)
def test_a_waiting_workflow_gains_one_point_of_priority_per_aging_step(
    priority: int, since: float, now: float, effective: int
) -> None:
    assert effective_priority(Claim(0, 1, since, priority), now) == effective


@pytest.mark.parametrize("arrivals_per_slot", [1, 2])
def test_a_low_priority_run_gets_a_slot_under_a_steady_stream_of_high_priority_runs(
    arrivals_per_slot: int,
) -> None:
    """Limit 1, a slot frees every 10 s and 1 or 2 new priority-10 runs arrive with it; the
    priority-0 run goes before every one that came more than (10 - 0) x 15 s after it."""
    low, period, gap = ("ns", "low"), 10.0, 10
    claims: dict[tuple[str, str], Claim] = {low: Claim(0, 1, 0.0, 0)}
    served_at = None
    for step in range(1, 200):
        now = step * period
        for n in range(arrivals_per_slot):
            claims[("ns", f"high-{step}-{n}")] = Claim(0, 1, now, gap)
        (chosen,) = share(1, claims, now)
        del claims[chosen]
        if chosen == low:
            served_at = now
            break
    arrived_before_it = arrivals_per_slot * (gap * AGING_SECONDS // period + 1)
    assert served_at is not None
    assert gap * AGING_SECONDS <= served_at <= (arrived_before_it + 1) * period


def held(by: str | None, count: int = 0) -> Decision:
    return Decision(status=WorkflowStatus(), held_back=count, held_by=by)


class Gate:
    """A gate over plain-dict indexes, with the runs it woke."""

    def __init__(self, **limits: Any) -> None:
        self.jobs: dict[str, list[tuple[str, str]]] = {"a-dev": [], "a-prod": []}
        self.tokens: dict[str, list[tuple[str, int]]] = {"a-dev": [], "a-prod": []}
        self.limits = {"team-a": [("team-a", TenantLimits.model_validate(limits))]}
        self.woken: list[tuple[str, str]] = []
        self.created: dict[tuple[str, str], set[str]] = {}
        ticks = itertools.count()
        self.gate = TenantGate(
            Indexes(
                tenant_of={"a-dev": ["team-a"], "a-prod": ["team-a"], "other": [None]},
                limits=self.limits,
                namespaces={"team-a": ["a-dev", "a-prod"]},
                active_jobs=self.jobs,
                tokens=self.tokens,
            ),
            created=lambda ns: {k: v for k, v in self.created.items() if k[0] == ns},
            wake=self.woken.append,
            clock=lambda: float(next(ticks)),
        )


def free_slots(gate: Gate, key: tuple[str, str]) -> int | None:
    found = gate.gate.share(key)
    assert found is not None
    return found.free_slots


def test_a_run_outside_a_limited_tenant_gets_no_share() -> None:
    gate = Gate().gate
    assert gate.share(("other", "x")) is None
    assert gate.share(A) is None  # team-a sets no limits


def test_running_counts_jobs_seen_created_and_being_created_across_namespaces() -> None:
    gate = Gate(maxConcurrentTasks=4)
    gate.jobs["a-prod"].append(("c", "c-job-1"))
    gate.created[A] = {"a-job-1"}
    gate.jobs["a-dev"].append(("a", "a-job-1"))  # seen and created: once
    gate.gate.reserve(A, 1)
    share_now = gate.gate.share(B)
    assert share_now is not None
    assert (share_now.free_slots, share_now.tenant) == (1, "team-a")  # 3 of 4 counted


def test_concurrent_reconciles_cannot_both_take_the_last_slot() -> None:
    gate = Gate(maxConcurrentTasks=1)
    assert free_slots(gate, A) == 1
    gate.gate.reserve(A, 1)  # a's reconcile is creating its Job
    assert free_slots(gate, B) == 0
    gate.created[A] = {"a-job-1"}  # created, not yet on the watch
    gate.gate.release(A, 1)
    assert free_slots(gate, B) == 0
    gate.created.clear()  # the create failed after all
    assert free_slots(gate, B) == 1


def test_a_held_back_run_is_woken_when_a_slot_frees_before_the_run_that_freed_it() -> None:
    gate = Gate(maxConcurrentTasks=2)
    gate.jobs["a-dev"] += [("a", "a-1"), ("a", "a-2")]
    assert free_slots(gate, B) == 0
    gate.gate.decided(B, held("TenantConcurrencyLimit", 5))
    assert gate.woken == []
    gate.jobs["a-dev"].remove(("a", "a-1"))
    gate.gate.slots_freed("a-dev")
    assert gate.woken == [B]
    assert free_slots(gate, A) == 0  # b runs fewer
    assert free_slots(gate, B) == 1


def test_tokens_elsewhere_are_the_tenants_other_workflows_and_a_raised_budget_wakes() -> None:
    gate = Gate(tokenBudget=100)
    gate.tokens["a-dev"] += [("a", 30), ("b", 50)]
    gate.tokens["a-prod"].append(("c", 15))
    share_now = gate.gate.share(A)
    assert share_now is not None
    assert (share_now.token_budget, share_now.tokens_elsewhere) == (100, 65)
    gate.gate.decided(A, held("TokenBudgetExceeded", 1))
    gate.gate.tenant_changed("team-a")  # a status update: same limits
    assert gate.woken == []
    gate.limits["team-a"] = [("team-a", TenantLimits(token_budget=500))]
    gate.gate.tenant_changed("team-a")
    assert gate.woken == [A]


def test_the_gate_shares_by_the_runs_priority_and_remembers_it_while_they_wait() -> None:
    gate = Gate(maxConcurrentTasks=1)
    gate.jobs["a-dev"].append(("c", "c-1"))
    assert free_slots(gate, A) == 0
    gate.gate.decided(A, held("TenantConcurrencyLimit", 3))
    assert gate.gate.share(B, priority=5) is not None
    gate.gate.decided(B, held("TenantConcurrencyLimit", 3))
    gate.jobs["a-dev"].clear()
    gate.gate.slots_freed("a-dev")
    assert gate.woken == [B]  # a waited longer, b's priority is higher
    assert free_slots(gate, A) == 0
    found = gate.gate.share(B, priority=5)
    assert found is not None and found.free_slots == 1
