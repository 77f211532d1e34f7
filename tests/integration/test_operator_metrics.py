"""The real operator's ``/metrics`` after a real run: leader and standby, promtool, a failover.

Two operator processes (``kopf run -m troupe_operator.main``, each serving its own
``TROUPE_METRICS_PORT``) run against the emulator, with the Job runner playing the
kubelet and the OpenAI stub answering. A Tenant caps its namespace at one task at a
time with a token budget; its Workflow has two roots and a dependent task, and the
stub fails the first model call, so one task is retried. The leader's scrape must
show exactly that run (the failed call among its model calls, and the series a first
failure would need already at 0); the standby's must count none of it; ``promtool check
metrics`` must accept both, and the docs must list every family. Then the leader
stops: the standby, now leading, must report the finished Workflow and the
Tenant's budget from the cluster, and count none of the run's tasks or tokens again.
"""

from __future__ import annotations

import pathlib
import re
import subprocess
from collections.abc import Mapping
from typing import Any, cast

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.test_tenants import create, tenant, wait_ready
from tests.integration.troupe_driver import (
    GROUP,
    VERSION,
    OperatorProcess,
    Troupe,
    agent,
    reply_naming_the_task,
    workflow,
)
from tests.support.openai_stub import Fault, OpenAIStub
from tests.support.tools import required_tool
from tests.support.waiting import wait_for

NAMESPACE = "metrics-dev"
TENANT = "metrics-team"
BUDGET = 1_000_000
WAIT = 120.0
LEASES = {
    "TROUPE_LEASE_DURATION_SECONDS": "15",
    "TROUPE_RENEW_DEADLINE_SECONDS": "10",
    "TROUPE_RETRY_PERIOD_SECONDS": "1",
}
"""client-go's durations: a loaded machine must not cost the leader its Lease (and counters)."""
DOCS = pathlib.Path(__file__).resolve().parents[2] / "docs" / "observability.md"
COUNTED = (
    "troupe_tasks_started_total",
    "troupe_tasks_retried_total",
    "troupe_tasks_succeeded_total",
    "troupe_task_queue_wait_seconds_count",
    "troupe_task_tokens_total",
    "troupe_task_llm_calls_total",
    "troupe_task_llm_errors_total",
    "troupe_workflows_finished_total",
)
"""The run's counters: only the process that reconciles counts them, and only once."""
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(process: OperatorProcess) -> str | None:
    try:
        response = httpx.get(f"http://127.0.0.1:{process.metrics_port}/metrics", timeout=5)
    except httpx.TransportError:
        return None
    return response.text if response.status_code == 200 else None


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def total(samples: Samples, metric: str, **labels: str) -> float:
    """The sum of ``metric``'s samples whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(
        value for (found, have), value in samples.items() if found == metric and wanted <= have
    )


def series(samples: Samples, metric: str) -> list[dict[str, str]]:
    return [dict(labels) for found, labels in samples if found == metric]


def leading(*processes: OperatorProcess) -> tuple[OperatorProcess, OperatorProcess] | None:
    """The leader and the standby, once one reports leading and the other not."""
    status = {}
    for process in processes:
        text = scrape(process)
        status[process.identity] = (
            total(parse(text), "leader_election_master_status") if text else -1
        )
    leaders = [process for process in processes if status[process.identity] == 1]
    standbys = [process for process in processes if status[process.identity] == 0]
    return (leaders[0], standbys[0]) if len(leaders) == len(standbys) == 1 else None


def apply(troupe: Troupe, *bodies: dict[str, Any]) -> None:
    for body in bodies:
        body["metadata"]["namespace"] = NAMESPACE
        plural = body["kind"].lower() + "s"
        troupe.custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, plural, body)


def ended(troupe: Troupe, name: str) -> Mapping[str, Any] | None:
    """The Workflow's status once it has ended."""
    body = troupe.custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, "workflows", name)
    status: Mapping[str, Any] = cast(dict[str, Any], body).get("status") or {}
    return status if status.get("phase") in ("Succeeded", "Failed") else None


def test_a_run_is_counted_once_by_the_leader_never_by_the_standby_and_promtool_accepts_both(
    troupe: Troupe, kubeconfig: pathlib.Path
) -> None:
    limits = {"maxConcurrentTasks": 1, "tokenBudget": BUDGET}
    tasks = [
        {"name": "first", "retries": 1},
        {"name": "second", "retries": 1},
        {
            "name": "joined",
            "retries": 1,
            "dependsOn": ["first"],
            "prompt": "TASK=joined {{ tasks.first.output }}",
        },
    ]
    with (
        OpenAIStub(reply=reply_naming_the_task) as stub,
        troupe.operator_process(kubeconfig, "op-a", LEASES) as one,
        troupe.operator_process(kubeconfig, "op-b", LEASES) as two,
    ):
        stub.inject(Fault.server_error())  # the first model call fails: its task runs twice
        leader, standby = wait_for(lambda: leading(one, two), timeout=WAIT, what="a leader")
        create(troupe, tenant(TENANT, [NAMESPACE], limits=limits))
        wait_ready(troupe, TENANT)
        apply(troupe, agent("worker", stub.base_url), workflow("pipeline", tasks))
        status = wait_for(lambda: ended(troupe, "pipeline"), timeout=WAIT, what="the run to end")
        assert status["phase"] == "Succeeded", status.get("message")
        used = status["usage"]
        left = BUDGET - used["totalTokens"]

        def counted() -> str | None:
            """A scrape once the run is counted and the Tenant's status has its tokens."""
            text = scrape(leader)
            samples = parse(text) if text else {}
            finished = total(samples, "troupe_workflows_finished_total", namespace=NAMESPACE)
            remaining = total(samples, "troupe_tenant_budget_remaining_tokens", tenant=TENANT)
            return text if finished == 1 and remaining == left else None

        exposition = wait_for(counted, timeout=WAIT, interval=0.2, what="the leader's metrics")
        idle = scrape(standby)
        # A restart would start its counters at 0 (what this test checks they count right).
        assert (one.exits, two.exits) == ([], []), "an operator exited mid-run"

        leader.stop()  # it releases the Lease: the standby leads, the cluster tells it the rest

        def reported() -> Samples | None:
            text = scrape(standby)
            samples = parse(text) if text else {}
            phases = total(samples, "troupe_workflows", namespace=NAMESPACE, phase="Succeeded")
            budget = total(samples, "troupe_tenant_budget_remaining_tokens", tenant=TENANT)
            reconciled = "controller_runtime_reconcile_total"  # the ended run, looked at
            looked = total(samples, reconciled, controller="workflow") >= 1
            return samples if phases == 1 and looked and budget == left else None

        later = wait_for(reported, timeout=WAIT, interval=0.2, what="the new leader's gauges")

    samples = parse(exposition)
    at = {"namespace": NAMESPACE}
    by_agent = {**at, "agent": "worker"}
    assert total(samples, "troupe_tasks_started_total", **by_agent) == 3
    assert total(samples, "troupe_tasks_retried_total", **by_agent) == 1
    assert total(samples, "troupe_tasks_succeeded_total", **by_agent) == 3
    assert total(samples, "troupe_tasks_failed_total", **at) == 0
    durations = "troupe_task_duration_seconds_count"
    assert total(samples, durations, **by_agent, phase="Succeeded") == 3
    assert total(samples, "troupe_task_dispatch_latency_seconds_count", **at) == 3
    # Every Job counted once in the queue wait; a root waits for the Tenant's one slot.
    assert total(samples, "troupe_task_queue_wait_seconds_count", **at) == 4
    assert total(samples, "troupe_task_queue_wait_seconds_count", **at, reason="tenant_limit")
    tokens = "troupe_task_tokens_total"
    model = {**by_agent, "model": "stub-model"}
    assert total(samples, tokens, **model, direction="input") == used["inputTokens"]
    assert total(samples, tokens, **model, direction="output") == used["outputTokens"]
    assert {s["model"] for s in series(samples, tokens)} == {"stub-model"}
    # Every model call the pods made, the failed one by its status, as status records them.
    recorded = [task["calls"] for task in status["tasks"].values()]
    made = sum(calls["total"] for calls in recorded)
    assert made == len(stub.chat_requests) == total(samples, "troupe_task_llm_calls_total", **model)
    errors = "troupe_task_llm_errors_total"
    assert total(samples, errors, **model, status="500") == 1
    assert sum(sum(calls.get("failed", {}).values()) for calls in recorded) == 1
    # Created at 0, so that the first 429 or failure shows in rate() and increase().
    assert {**model, "status": "429"} in series(samples, errors)
    assert {**at, "phase": "Failed"} in series(samples, "troupe_workflows_finished_total")
    assert by_agent in series(samples, "troupe_tasks_failed_total")
    phases = {
        phase: total(samples, "troupe_workflows", **at, phase=phase)
        for phase in ("Pending", "Running", "Succeeded", "Failed", "Error")
    }
    assert len(series(samples, "troupe_workflows")) == 5  # every phase, 0 included
    assert phases == {"Pending": 0, "Running": 0, "Succeeded": 1, "Failed": 0, "Error": 0}
    assert total(samples, "troupe_workflows_finished_total", **at, phase="Succeeded") == 1
    assert total(samples, "troupe_tenant_budget_tokens", tenant=TENANT) == BUDGET
    assert total(samples, "troupe_tasks_waiting") == 0
    for controller in ("workflow", "agent", "tenant"):
        reconciles = "controller_runtime_reconcile_total"
        assert total(samples, reconciles, controller=controller) > 0, controller
        assert total(samples, "workqueue_adds_total", name=controller) > 0, controller
        assert series(samples, "workqueue_depth").count({"name": controller}) == 1
        workers = "controller_runtime_max_concurrent_reconciles"
        assert total(samples, workers, controller=controller) == 16, controller
    lease_missing = {"verb": "get", "resource": "leases", "code": "404"}
    assert total(samples, "troupe_api_errors_total", **lease_missing) >= 1  # it created the Lease
    assert total(samples, "leader_election_master_status", name="troupe-operator") == 1
    values = {value for _, labels in samples for _, value in labels}
    assert not values & {"pipeline", "first", "second", "joined"}  # no object's name

    assert idle is not None, "the standby served no metrics"
    standby_samples = parse(idle)
    assert total(standby_samples, "leader_election_master_status", name="troupe-operator") == 0
    reconciling = ("controller_runtime_reconcile_total", "workqueue_depth", "troupe_workflows")
    for metric in (*COUNTED, *reconciling):
        assert not series(standby_samples, metric), f"the standby reports {metric}"
    for metric in COUNTED:
        assert total(later, metric) == 0, f"{metric} counted again after the failover"

    assert_promtool_accepts(exposition)
    assert_promtool_accepts(idle)
    assert_documented(exposition)


def assert_promtool_accepts(exposition: str) -> None:
    promtool = required_tool("promtool", "Debian's prometheus package")
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=exposition.encode(), capture_output=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def assert_documented(exposition: str) -> None:
    """docs/observability.md's Metrics section names every family the operator serves."""
    section = re.search(r"^## Metrics$(.*?)(?=^## |\Z)", DOCS.read_text(), re.M | re.S)
    assert section is not None, "docs/observability.md has no '## Metrics' section"
    families = {family.name for family in text_string_to_metric_families(exposition)}
    missing = sorted(name for name in families if f"`{name}" not in section.group(1))
    assert not missing, f"not in docs/observability.md: {missing}"
