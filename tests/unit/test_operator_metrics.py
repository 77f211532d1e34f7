"""The operator's metrics count by their documented rules: once each, bounded labels.

The Workflow metrics are counted by the shell from status transitions and the
Jobs it creates (``controller/run_metrics.py``), so the rules are tested here on
statuses: a replayed reconcile and a restarted operator count nothing twice.
The scrape-time gauges (``controller/inventory.py``, the worker pools in
``controller/metrics.py``) are read from plain mappings standing in for kopf's
indexes, and the core's reasons for holding tasks back from its decisions.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes.aio import client
from prometheus_client import REGISTRY, CollectorRegistry

from troupe_operator.api import (
    AgentSpec,
    ModelCalls,
    TaskPhase,
    TaskReport,
    TaskResult,
    TaskStatus,
    TokenUsage,
    WorkflowPhase,
    WorkflowSpec,
    WorkflowStatus,
    call_status,
)
from troupe_operator.api.common import CALL_STATUSES_KEPT
from troupe_operator.controller import metrics
from troupe_operator.controller.inventory import (
    Inventory,
    Sources,
    snapshot,
    tenant_budget,
    workflow_phase,
)
from troupe_operator.controller.kube import Kube, call_labels
from troupe_operator.controller.run_metrics import (
    RunMetrics,
    dag_ready_at,
    note_waiting,
    reason_label,
)
from troupe_operator.controller.workqueue import WorkQueue
from troupe_operator.workflow import JobState, Observation, ObservedJob, TenantShare, reconcile

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
NS = "team"
AGENTS = {"a": "writer", "b": "reviewer"}


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def run_metrics(registry: CollectorRegistry) -> RunMetrics:
    return RunMetrics(registry)


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def status(
    phase: WorkflowPhase | None = WorkflowPhase.RUNNING, **tasks: TaskStatus
) -> WorkflowStatus:
    return WorkflowStatus(phase=phase, tasks=tasks)


def running(attempt: int = 1, usage: TokenUsage | None = None) -> TaskStatus:
    return TaskStatus(
        phase=TaskPhase.RUNNING, attempts=attempt, job=f"j-{attempt}", started_at=T0, usage=usage
    )


def usage(given: int, received: int) -> TokenUsage:
    return TokenUsage(input_tokens=given, output_tokens=received, total_tokens=given + received)


def finished_job(task: str, attempt: int, model: str | None = "gpt-x") -> ObservedJob:
    result = TaskResult(model=model) if model else None
    return ObservedJob(
        name=f"j-{attempt}",
        task=task,
        attempt=attempt,
        state=JobState.SUCCEEDED,
        finished_at=T0 + timedelta(seconds=40),
        report=TaskReport(succeeded=True, result=result),
    )


# -- tasks ended, durations, workflows finished ----------------------------------


def test_a_task_that_ends_is_counted_once_with_its_duration(
    run_metrics: RunMetrics, registry: CollectorRegistry
) -> None:
    before = status(a=running(), b=running())
    after = status(
        a=running().model_copy(
            update={"phase": TaskPhase.SUCCEEDED, "finished_at": T0 + timedelta(seconds=30)}
        ),
        b=running().model_copy(
            update={"phase": TaskPhase.FAILED, "finished_at": T0 + timedelta(seconds=5)}
        ),
    )
    run_metrics.settled(NS, AGENTS, before, after)
    run_metrics.settled(NS, AGENTS, after, after)  # the next reconcile: nothing new
    assert value(registry, "troupe_tasks_succeeded_total", namespace=NS, agent="writer") == 1
    assert value(registry, "troupe_tasks_failed_total", namespace=NS, agent="reviewer") == 1
    duration = "troupe_task_duration_seconds_sum"
    assert value(registry, duration, namespace=NS, agent="writer", phase="Succeeded") == 30
    assert value(registry, duration, namespace=NS, agent="reviewer", phase="Failed") == 5


def test_a_replayed_reconcile_and_a_restarted_operator_count_nothing_twice(
    run_metrics: RunMetrics, registry: CollectorRegistry
) -> None:
    before = status(a=running())
    done = running(usage=usage(10, 4)).model_copy(
        update={"phase": TaskPhase.SUCCEEDED, "finished_at": T0 + timedelta(seconds=3)}
    )
    after = status(WorkflowPhase.SUCCEEDED, a=done)
    # The status write failed: the retried reconcile decides again from the same status
    # and counts only once its write succeeds (the failed one counted nothing).
    run_metrics.settled(NS, AGENTS, before, after, [finished_job("a", 1)])
    # A restarted operator starts from the status written: it has nothing to count.
    restarted = CollectorRegistry()
    RunMetrics(restarted).settled(NS, AGENTS, after, after, [finished_job("a", 1)])
    assert value(registry, "troupe_tasks_succeeded_total", namespace=NS, agent="writer") == 1
    tokens = {"namespace": NS, "agent": "writer", "model": "gpt-x"}
    assert value(registry, "troupe_task_tokens_total", **tokens, direction="input") == 10
    assert value(registry, "troupe_task_tokens_total", **tokens, direction="output") == 4
    finished = "troupe_workflows_finished_total"
    assert value(registry, finished, namespace=NS, phase="Succeeded") == 1
    counted = [s for family in restarted.collect() for s in family.samples if s.value]
    assert [s for s in counted if not s.name.endswith("_created")] == []


def test_without_timestamps_in_status_the_duration_ends_with_the_job(
    run_metrics: RunMetrics, registry: CollectorRegistry
) -> None:
    """A very large run's status drops a finished task's timestamps; the Job still says."""
    compacted = TaskStatus(phase=TaskPhase.SUCCEEDED, attempts=1)
    run_metrics.settled(
        NS, AGENTS, status(a=running()), status(a=compacted), [finished_job("a", 1)]
    )
    labels = {"namespace": NS, "agent": "writer", "phase": "Succeeded"}
    assert value(registry, "troupe_task_duration_seconds_sum", **labels) == 40
    unknown = TaskStatus(phase=TaskPhase.SUCCEEDED, attempts=1)
    run_metrics.settled(NS, AGENTS, status(b=TaskStatus()), status(b=unknown))
    reviewer = {**labels, "agent": "reviewer"}
    assert value(registry, "troupe_task_duration_seconds_count", **reviewer) == 0
    assert value(registry, "troupe_tasks_succeeded_total", namespace=NS, agent="reviewer") == 1


# -- tokens -------------------------------------------------------------------


def test_each_attempts_tokens_count_once_failed_attempts_included(
    run_metrics: RunMetrics, registry: CollectorRegistry
) -> None:
    """Attempt 1 fails after spending tokens, attempt 2 succeeds: both count, once each."""
    failed_once = running(1).model_copy(
        update={"phase": TaskPhase.RETRYING, "usage": usage(100, 20)}
    )
    statuses = [
        status(a=running(1)),
        status(a=failed_once),
        status(a=failed_once),  # waiting for its backoff
        status(a=running(2, usage(100, 20))),
        status(a=running(2, usage(150, 50)).model_copy(update={"phase": TaskPhase.SUCCEEDED})),
    ]
    jobs = [finished_job("a", 1), finished_job("a", 2)]
    for before, after in itertools.pairwise(statuses):
        run_metrics.settled(NS, AGENTS, before, after, jobs)
    labels = {"namespace": NS, "agent": "writer", "model": "gpt-x"}
    assert value(registry, "troupe_task_tokens_total", **labels, direction="input") == 150
    assert value(registry, "troupe_task_tokens_total", **labels, direction="output") == 50


def test_the_model_label_is_the_reported_one_else_status_else_unknown(
    run_metrics: RunMetrics, registry: CollectorRegistry
) -> None:
    spent = running(usage=usage(1, 1))
    run_metrics.settled(NS, AGENTS, status(a=running()), status(a=spent), [finished_job("a", 1)])
    in_status = spent.model_copy(update={"model": "from-status", "usage": usage(2, 2)})
    run_metrics.settled(NS, AGENTS, status(a=spent), status(a=in_status))
    run_metrics.settled(NS, {}, status(b=TaskStatus()), status(b=running(usage=usage(3, 0))))
    models = {
        (sample.labels["agent"], sample.labels["model"], sample.labels["direction"]): sample.value
        for family in registry.collect()
        if family.name == "troupe_task_tokens"
        for sample in family.samples
        if sample.name.endswith("_total") and sample.value
    }
    assert models == {
        ("writer", "gpt-x", "input"): 1,
        ("writer", "gpt-x", "output"): 1,
        ("writer", "from-status", "input"): 1,
        ("writer", "from-status", "output"): 1,
        ("unknown", "unknown", "input"): 3,
    }


def test_usage_that_shrinks_or_is_missing_counts_nothing(
    run_metrics: RunMetrics, registry: CollectorRegistry
) -> None:
    run_metrics.settled(NS, AGENTS, status(a=running(usage=usage(9, 9))), status(a=running()))
    run_metrics.settled(
        NS, AGENTS, status(a=running(usage=usage(9, 9))), status(a=running(usage=usage(5, 9)))
    )
    assert not [
        sample
        for family in registry.collect()
        if family.name == "troupe_task_tokens"
        for sample in family.samples
    ]


# -- model calls and their failures ----------------------------------------------


def calls(total: int, **failed: int) -> ModelCalls:
    return ModelCalls(total=total, failed={k.removeprefix("s"): v for k, v in failed.items()})


def test_each_attempts_calls_and_failures_count_once_by_status(
    run_metrics: RunMetrics, registry: CollectorRegistry
) -> None:
    """Attempt 1 meets two 429s and a timeout and fails; attempt 2 meets a 429 and succeeds."""
    first = calls(3, s429=2, timeout=1)
    retrying = running(1).model_copy(update={"phase": TaskPhase.RETRYING, "calls": first})
    both = first + calls(2, s429=1)
    statuses = [
        status(a=running(1)),
        status(a=retrying),
        status(a=retrying),  # waiting for its backoff
        status(a=running(2).model_copy(update={"calls": first})),
        status(a=running(2).model_copy(update={"phase": TaskPhase.SUCCEEDED, "calls": both})),
        status(a=running(2).model_copy(update={"phase": TaskPhase.SUCCEEDED, "calls": both})),
    ]
    jobs = [finished_job("a", 1), finished_job("a", 2)]
    for before, after in itertools.pairwise(statuses):
        run_metrics.settled(NS, AGENTS, before, after, jobs)
    RunMetrics(CollectorRegistry()).settled(NS, AGENTS, statuses[-1], statuses[-1], jobs)
    labels = {"namespace": NS, "agent": "writer", "model": "gpt-x"}
    assert value(registry, "troupe_task_llm_calls_total", **labels) == 5
    assert value(registry, "troupe_task_llm_errors_total", **labels, status="429") == 3
    assert value(registry, "troupe_task_llm_errors_total", **labels, status="timeout") == 1
    assert calls(1, s429=1) + calls(1, s429=1) == calls(2, s429=2)


def failed_first_attempt(task: str, code: str) -> ObservedJob:
    """Attempt 1 of ``task``, failed after one call to ``gpt-x`` answered ``code``."""
    return ObservedJob(
        "j-1",
        task,
        1,
        JobState.FAILED,
        report=TaskReport(
            succeeded=False,
            message=f"HTTP {code}",
            result=TaskResult(model="gpt-x", failed_calls={code: 1}),
        ),
    )


def test_a_failed_attempts_calls_take_its_model_when_the_next_attempt_starts_at_once(
    run_metrics: RunMetrics, registry: CollectorRegistry
) -> None:
    """No backoff: the write that records attempt 1's report already runs attempt 2."""
    failed = failed_first_attempt("a", "500")
    started = ObservedJob("j-2", "a", 2, JobState.ACTIVE)
    after = status(a=running(2).model_copy(update={"calls": calls(1, s500=1)}))
    run_metrics.settled(NS, AGENTS, status(a=running(1)), after, [failed, started])
    model = {"namespace": NS, "agent": "writer", "model": "gpt-x"}
    assert value(registry, "troupe_task_llm_errors_total", **model, status="500") == 1


def test_each_count_takes_the_agent_that_ran_its_attempt(
    run_metrics: RunMetrics, registry: CollectorRegistry
) -> None:
    """A failed attempt on ``primary``, its retry on ``backup`` started in the same write."""
    failed = failed_first_attempt("c", "503")
    first = running(1).model_copy(update={"agents": ["primary"]})
    retried = running(2).model_copy(update={"agents": ["primary", "backup"], "calls": calls(1)})
    run_metrics.settled(NS, {}, status(c=first), status(c=retried), [failed])
    ended = retried.model_copy(update={"phase": TaskPhase.SUCCEEDED, "finished_at": T0})
    run_metrics.settled(NS, {}, status(c=retried), status(c=ended))
    labels = {"namespace": NS, "model": "gpt-x"}
    assert value(registry, "troupe_task_llm_calls_total", **labels, agent="primary") == 1
    assert value(registry, "troupe_tasks_succeeded_total", namespace=NS, agent="backup") == 1
    assert value(registry, "troupe_tasks_succeeded_total", namespace=NS, agent="primary") == 0


def test_failure_statuses_stay_bounded_and_counts_never_move() -> None:
    """Past the statuses kept, new ones count as other; those kept keep counting apart."""
    many = ModelCalls()
    for code in range(500, 520):
        many = many + calls(1, **{f"s{code}": 1})
    assert len(many.failed) == CALL_STATUSES_KEPT
    assert many.failed["other"] == 20 - (CALL_STATUSES_KEPT - 1)
    assert (many + calls(1, s500=1)).failed["500"] == 2
    assert [call_status(s) for s in ("429", "timeout", "deadline", "999")] == [
        "429",
        "timeout",
        "error",
        "error",
    ]
    with pytest.raises(ValueError, match="not a call status"):
        ModelCalls(failed={"sk-secret": 1})


# -- series created at 0 before their first event -----------------------------------


def test_a_namespace_and_its_agents_series_exist_at_0_before_anything_ends(
    run_metrics: RunMetrics, registry: CollectorRegistry
) -> None:
    """rate() misses a series' first sample: a first failure must not be that sample."""
    run_metrics.settled(NS, AGENTS, status(), status(a=running(), b=running()))
    finished = "troupe_workflows_finished_total"
    for phase in ("Succeeded", "Failed"):
        assert registry.get_sample_value(finished, {"namespace": NS, "phase": phase}) == 0
    for counter in ("started", "retried", "succeeded", "failed"):
        for agent in AGENTS.values():
            labels = {"namespace": NS, "agent": agent}
            assert registry.get_sample_value(f"troupe_tasks_{counter}_total", labels) == 0
    spent = running(usage=usage(5, 1)).model_copy(update={"calls": calls(1)})
    run_metrics.settled(NS, AGENTS, status(a=running()), status(a=spent), [finished_job("a", 1)])
    model = {"namespace": NS, "agent": "writer", "model": "gpt-x"}
    assert (
        registry.get_sample_value("troupe_task_llm_errors_total", {**model, "status": "429"}) == 0
    )
    assert registry.get_sample_value("troupe_task_llm_calls_total", model) == 1


# -- attempts started, queue wait, dispatch latency ------------------------------


def test_first_attempts_are_started_later_ones_retried_with_their_wait_reason(
    run_metrics: RunMetrics, registry: CollectorRegistry
) -> None:
    run_metrics.attempt_started(NS, "writer", 1, 0.01, None, 1.5)
    run_metrics.attempt_started(NS, "writer", 2, 12.0, "TenantConcurrencyLimit", None)
    run_metrics.attempt_started(NS, "writer", 1, 3.0, "Parallelism", 4.0)
    assert value(registry, "troupe_tasks_started_total", namespace=NS, agent="writer") == 2
    assert value(registry, "troupe_tasks_retried_total", namespace=NS, agent="writer") == 1
    wait = "troupe_task_queue_wait_seconds_sum"
    assert value(registry, wait, namespace=NS, reason="none") == pytest.approx(0.01)
    assert value(registry, wait, namespace=NS, reason="tenant_limit") == 12
    assert value(registry, wait, namespace=NS, reason="parallelism") == 3
    assert value(registry, "troupe_task_dispatch_latency_seconds_count", namespace=NS) == 2
    assert value(registry, "troupe_task_dispatch_latency_seconds_sum", namespace=NS) == 5.5


def test_reasons_map_to_a_bounded_set_of_labels() -> None:
    reasons = [
        "Parallelism",
        "TenantConcurrencyLimit",
        "TokenBudgetExceeded",
        "AgentNotFound",
        "NoMatchingAgent",
        "NamespaceNotTenanted",
        "SomethingNew",
        None,
    ]
    assert [reason_label(reason) for reason in reasons] == [
        "parallelism",
        "tenant_limit",
        "budget",
        "agent_not_found",
        "no_matching_agent",
        "not_tenanted",
        "unknown",
        "none",
    ]


def test_a_held_task_keeps_the_time_it_was_first_held_and_its_latest_reason() -> None:
    waiting: dict[str, tuple[float, str]] = {}
    note_waiting(waiting, {"a": "Parallelism", "b": "Parallelism"}, now=10.0)
    note_waiting(waiting, {"a": "TenantConcurrencyLimit"}, now=15.0)  # b started
    assert waiting == {"a": (10.0, "TenantConcurrencyLimit")}
    note_waiting(waiting, {}, now=20.0)
    assert waiting == {}


def test_a_task_is_dag_ready_when_its_last_dependency_ended() -> None:
    spec = WorkflowSpec.model_validate(
        {
            "tasks": [
                {"name": "a", "agent": "x", "prompt": "p"},
                {"name": "b", "agent": "x", "prompt": "p"},
                {"name": "c", "agent": "x", "prompt": "p", "dependsOn": ["a", "b"]},
            ]
        }
    )
    a, _, c = spec.tasks
    ended = {
        "a": TaskStatus(phase=TaskPhase.SUCCEEDED, finished_at=T0 + timedelta(seconds=5)),
        "b": TaskStatus(phase=TaskPhase.SUCCEEDED, finished_at=T0 + timedelta(seconds=9)),
    }
    ran = WorkflowStatus(tasks=ended)
    assert dag_ready_at(c, ran, T0) == T0 + timedelta(seconds=9)
    assert dag_ready_at(a, ran, T0) == T0  # no dependencies: the Workflow's creation
    compacted = {**ended, "b": TaskStatus(phase=TaskPhase.SUCCEEDED)}
    assert dag_ready_at(c, WorkflowStatus(tasks=compacted), T0) is None
    assert dag_ready_at(None, ran, T0) is None


# -- the core says why each ready task waits ---------------------------------------


def observation(spec: dict[str, Any], **fields: Any) -> Observation:
    return Observation(
        namespace=NS,
        name="wf",
        uid="uid-1",
        generation=1,
        spec=WorkflowSpec.model_validate({"retryBackoffSeconds": 0, **spec}),
        status=WorkflowStatus(),
        now=T0,
        agents={"x": AgentSpec()},
        **fields,
    )


FOUR = [{"name": n, "agent": "x", "prompt": "p"} for n in "abcd"]


def test_the_decision_names_each_held_task_with_what_held_it() -> None:
    decision = reconcile(observation({"tasks": FOUR, "parallelism": 2}))
    assert dict(decision.waiting) == {"c": "Parallelism", "d": "Parallelism"}

    missing = [*FOUR[:2], {"name": "e", "agent": "nobody", "prompt": "p"}]
    assert dict(reconcile(observation({"tasks": missing})).waiting) == {"e": "AgentNotFound"}
    unmatched = [*FOUR[:1], {"name": "f", "agentSelector": {"skills": ["z"]}, "prompt": "p"}]
    assert dict(reconcile(observation({"tasks": unmatched})).waiting) == {"f": "NoMatchingAgent"}

    slots = TenantShare("t", free_slots=1, max_concurrent_tasks=1)
    decision = reconcile(observation({"tasks": FOUR[:3]}, tenant=slots))
    assert dict(decision.waiting) == dict.fromkeys("bc", "TenantConcurrencyLimit")

    spent = TenantShare("t", token_budget=10, tokens_elsewhere=10)
    decision = reconcile(observation({"tasks": FOUR[:2]}, tenant=spent))
    assert dict(decision.waiting) == dict.fromkeys("ab", "TokenBudgetExceeded")

    refused = reconcile(observation({"tasks": FOUR[:1]}, tenancy_refusal="no Tenant"))
    assert dict(refused.waiting) == {"a": "NamespaceNotTenanted"}

    assert dict(reconcile(observation({"tasks": FOUR})).waiting) == {}


# -- scrape-time gauges ---------------------------------------------------------


def collected(collector: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in collector.collect()
        for sample in family.samples
    }


def test_workflows_by_phase_budgets_and_waiting_tasks_are_read_at_scrape_time() -> None:
    inventory = Inventory()
    assert collected(inventory) == {}  # a standby: the families, no samples
    phases = {"team": ["Succeeded", "Succeeded", "Running"], "other": ["Pending"]}
    budgets: dict[str, list[tuple[int, int | None]]] = {"t1": [(1000, 250)], "t2": [(50, None)]}
    inventory.watch(
        Sources(phases, budgets, lambda: [("team", ["Parallelism", "Parallelism"]), ("x", [])])
    )
    found = collected(inventory)
    workflows = {k[1]: v for k, v in found.items() if k[0] == "troupe_workflows"}
    assert workflows[(("namespace", "team"), ("phase", "Succeeded"))] == 2
    assert workflows[(("namespace", "team"), ("phase", "Failed"))] == 0
    assert workflows[(("namespace", "other"), ("phase", "Pending"))] == 1
    assert len(workflows) == 2 * len(WorkflowPhase)
    assert found[("troupe_tenant_budget_tokens", (("tenant", "t1"),))] == 1000
    assert found[("troupe_tenant_budget_remaining_tokens", (("tenant", "t1"),))] == 250
    assert ("troupe_tenant_budget_remaining_tokens", (("tenant", "t2"),)) not in found
    waiting = ("troupe_tasks_waiting", (("namespace", "team"), ("reason", "parallelism")))
    assert found[waiting] == 2
    inventory.unwatch()
    assert collected(inventory) == {}


def test_phases_and_budgets_are_read_from_objects_as_kopf_gives_them() -> None:
    assert workflow_phase({"phase": "Failed"}) == "Failed"
    assert workflow_phase({}) == "Pending"  # not reconciled yet
    assert workflow_phase({"phase": "Bogus"}) == "Pending"
    assert tenant_budget({"limits": {"tokenBudget": 100}}, {"budgetRemaining": 40}) == (100, 40)
    assert tenant_budget({"limits": {"tokenBudget": 100}}, {}) == (100, None)
    assert tenant_budget({"limits": {}}, {"budgetRemaining": 1}) is None
    assert tenant_budget({}, {}) is None


def test_a_snapshot_copies_every_key_and_value() -> None:
    index = {"a": [1, 2], "b": [], "c": [3]}
    assert snapshot(index) == [("a", [1, 2]), ("c", [3])]


# -- the work queue and the worker pools -----------------------------------------


class Heard:
    def __init__(self) -> None:
        self.adds = 0
        self.waits: list[float] = []
        self.works: list[float] = []

    def added(self) -> None:
        self.adds += 1

    def taken(self, waited: float) -> None:
        self.waits.append(waited)

    def finished(self, worked: float) -> None:
        self.works.append(worked)


async def test_the_queue_reports_each_add_once_as_client_go_does() -> None:
    heard = Heard()
    queue: WorkQueue[str] = WorkQueue(observer=heard)
    queue.add("a")
    queue.add("a")  # already queued: not an add
    key, _ = await queue.get()
    assert queue.processing_since() and heard.waits
    queue.add("a")  # marked to run again: an add
    queue.add("a")
    queue.done(key)  # queued again, not counted again
    assert (heard.adds, len(queue), len(heard.works)) == (2, 1, 1)
    await queue.get()
    queue.add_rate_limited("a")
    assert heard.adds == 2  # still being processed: the delayed add comes later
    queue.done("a")
    await asyncio.wait_for(queue.get(), 5)
    assert heard.adds == 3


@pytest.fixture
def pool() -> Iterator[str]:
    name = "test-pool"
    yield name
    metrics.unwatch_pool(name)


def test_worker_pools_report_depth_and_work_in_progress(pool: str) -> None:
    clock = time.monotonic()
    metrics.watch_pool(pool, 4, lambda: 3, lambda: [clock - 10, clock - 2])

    def sample(name: str, label: str = "name") -> float | None:
        return REGISTRY.get_sample_value(name, {label: pool})

    assert sample("workqueue_depth") == 3
    assert sample("workqueue_longest_running_processor_seconds") == pytest.approx(10, abs=1)
    assert sample("workqueue_unfinished_work_seconds") == pytest.approx(12, abs=2)
    assert sample("controller_runtime_active_workers", "controller") == 2
    assert sample("controller_runtime_max_concurrent_reconciles", "controller") == 4
    metrics.unwatch_pool(pool)
    assert sample("workqueue_depth") is None


# -- API errors -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "labels"),
    [
        ("get", "/api/v1/namespaces/ns/pods", ("list", "pods")),
        ("get", "/apis/batch/v1/namespaces/ns/jobs/j-1", ("get", "jobs")),
        ("post", "/apis/batch/v1/namespaces/ns/jobs", ("create", "jobs")),
        ("delete", "/apis/batch/v1/namespaces/ns/jobs/j-1", ("delete", "jobs")),
        (
            "patch",
            "/apis/troupe.dev/v1alpha1/namespaces/ns/workflows/w/status",
            ("patch", "workflows/status"),
        ),
        ("put", "/apis/coordination.k8s.io/v1/namespaces/ns/leases/l", ("update", "leases")),
        ("get", "/apis/troupe.dev/v1alpha1/tenants/t", ("get", "tenants")),
        ("patch", "/apis/troupe.dev/v1alpha1/tenants/t/status", ("patch", "tenants/status")),
        ("get", "/api/v1/namespaces", ("list", "namespaces")),
        ("put", "/api/v1/namespaces/ns", ("update", "namespaces")),
        ("put", "/api/v1/namespaces/ns/finalize", ("update", "namespaces/finalize")),
        ("get", "/api/v1/namespaces/ns/configmaps/c?x=1", ("get", "configmaps")),
    ],
)
def test_api_calls_are_labelled_by_verb_and_resource_never_by_name(
    method: str, path: str, labels: tuple[str, str]
) -> None:
    assert call_labels(method, path) == labels


async def test_a_failed_api_call_is_counted_by_verb_resource_and_code() -> None:
    labels = {"verb": "get", "resource": "jobs", "code": "connection"}
    before = REGISTRY.get_sample_value("troupe_api_errors_total", labels) or 0.0
    api = client.ApiClient(client.Configuration(host="http://127.0.0.1:9"))  # nothing listens
    try:
        assert await Kube(api, 5.0).read_job("ns", "j-1") is None
    except Exception as error:  # the error itself is the reconcile's business
        assert "ConnectionError" in str(error)
    finally:
        await api.close()  # type: ignore[no-untyped-call]
    assert REGISTRY.get_sample_value("troupe_api_errors_total", labels) == before + 1
