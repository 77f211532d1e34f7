"""A Tenant's limits, enforced by the real operator across its Workflows.

``limits.maxConcurrentTasks`` is checked by sampling the task pods the Job
runner runs every 50 ms; ``limits.tokenBudget`` by a run whose budget is
spent while one of its tasks still runs, with the operator restarted in the
middle in one variant (its counting must come from the cluster).
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from typing import Any

import kubernetes
import pytest

from tests.integration.test_tenants import Body, conditions, create, read_tenant, tenant, wait_ready
from tests.integration.test_workflow_faults import ENDED
from tests.integration.troupe_driver import (
    GROUP,
    VERSION,
    Troupe,
    agent,
    reply_naming_the_task,
    workflow,
)
from tests.support.openai_stub import Fault, OpenAIStub
from tests.support.waiting import wait_for

NAMESPACE = "a-dev"
WAIT = 90.0

# Ten task processes, each importing LangChain, two at a time: on a loaded machine the runs
# outlast pytest's default 120 s. Each wait inside has its own bound.
pytestmark = pytest.mark.timeout(480)


def apply(troupe: Troupe, *bodies: Body) -> None:
    for body in bodies:
        body["metadata"]["namespace"] = NAMESPACE
        plural = body["kind"].lower() + "s"
        troupe.custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, plural, body)


def run(troupe: Troupe, name: str) -> Body:
    body: Body = troupe.custom.get_namespaced_custom_object(
        GROUP, VERSION, NAMESPACE, "workflows", name
    )
    return body


def ready_reason(body: Body) -> str | None:
    return conditions(body).get("Ready", {}).get("reason")


def task_jobs(troupe: Troupe) -> list[str]:
    """The tasks of the Jobs of the run ``capped``, one entry per Job."""
    batch = kubernetes.client.BatchV1Api(troupe.api)
    found = batch.list_namespaced_job(NAMESPACE, label_selector="troupe.dev/workflow=capped")
    return sorted(job.metadata.labels["troupe.dev/task"] for job in found.items)


def wait_event(troupe: Troupe, namespace: str, name: str, reason: str) -> None:
    """The Event is posted after the status write that the test saw: it may come a moment later."""

    def posted() -> bool:
        found = troupe.core.list_namespaced_event(namespace).items
        return any((e.involved_object.name, e.reason) == (name, reason) for e in found)

    wait_for(posted, timeout=WAIT, what=f"a {reason} Event on {name}")


def test_max_concurrent_tasks_caps_pods_and_shares_slots_fairly_across_workflows(
    troupe: Troupe,
) -> None:
    create(troupe, tenant("team-a", [NAMESPACE], limits={"maxConcurrentTasks": 2}))
    names = ("left", "right")
    samples: list[Counter[str]] = []
    reasons: set[str | None] = set()

    def sample() -> list[Body] | None:
        """Running task pods by Workflow, and the Workflows' reasons; the runs once ended."""
        pods = troupe.core.list_namespaced_pod(NAMESPACE, label_selector="troupe.dev/workflow")
        samples.append(
            Counter(
                pod.metadata.labels["troupe.dev/workflow"]
                for pod in pods.items
                if pod.status and pod.status.phase == "Running"
            )
        )
        runs = [run(troupe, name) for name in names]
        reasons.update(ready_reason(body) for body in runs)
        ended = all((body.get("status") or {}).get("phase") in ENDED for body in runs)
        return runs if ended else None

    with OpenAIStub(reply=reply_naming_the_task) as stub, troupe.operator():
        wait_ready(troupe, "team-a")
        apply(troupe, agent("worker", stub.base_url))
        for name in names:
            apply(troupe, workflow(name, [{"name": f"t{i}"} for i in range(5)]))
        runs = wait_for(sample, timeout=180, interval=0.05, what="both Workflows to end")

    assert [body["status"]["phase"] for body in runs] == ["Succeeded", "Succeeded"]
    assert max(sum(counts.values()) for counts in samples) == 2
    assert "TenantConcurrencyLimit" in reasons

    def running(name: str) -> list[int]:
        return [i for i, counts in enumerate(samples) if counts[name]]

    # Neither waits for the other to finish: each starts before the other's last task ends.
    assert running("right")[0] < running("left")[-1]
    assert running("left")[0] < running("right")[-1]


@pytest.mark.parametrize("restart", [False, True], ids=["one-operator", "restarted"])
def test_a_spent_token_budget_lets_running_tasks_finish_and_holds_the_next_until_raised(
    troupe: Troupe, restart: bool
) -> None:
    create(troupe, tenant("team-a", [NAMESPACE], limits={"tokenBudget": 1}))
    release = threading.Event()
    tasks: list[Body] = [
        {"name": "a"},
        {"name": "slow", "agent": "slow-worker"},
        {"name": "c", "dependsOn": ["a", "slow"]},
    ]
    operator = contextlib.ExitStack()
    with (
        OpenAIStub(reply=reply_naming_the_task) as fast,
        OpenAIStub(reply=reply_naming_the_task) as held,
        operator,
    ):
        operator.enter_context(troupe.operator())
        held.inject(Fault.held(release))
        wait_ready(troupe, "team-a")
        apply(troupe, agent("worker", fast.base_url), agent("slow-worker", held.base_url))
        apply(troupe, workflow("capped", tasks))

        def task_phases() -> dict[str, Any] | None:
            phases = {
                name: task.get("phase")
                for name, task in (
                    (run(troupe, "capped").get("status") or {}).get("tasks") or {}
                ).items()
            }
            return phases if phases.get("a") == "Succeeded" else None

        # The budget is spent by a while slow still runs.
        assert wait_for(task_phases, timeout=WAIT, what="a to succeed")["slow"] == "Running"
        if restart:  # a new operator, with nothing in memory, sees slow finish
            operator.close()
            operator.enter_context(troupe.operator())
        release.set()

        def held_back() -> Body | None:
            body = run(troupe, "capped")
            return body if ready_reason(body) == "TokenBudgetExceeded" else None

        body = wait_for(held_back, timeout=WAIT, what="the run to wait for the budget")
        status = body["status"]
        assert {n: t["phase"] for n, t in status["tasks"].items()} == {
            "a": "Succeeded",
            "slow": "Succeeded",
            "c": "Pending",
        }
        assert status["phase"] == "Running"
        assert "limits.tokenBudget" in status["message"]
        assert task_jobs(troupe) == ["a", "slow"]
        wait_event(troupe, NAMESPACE, "capped", "TokenBudgetExceeded")

        def spent() -> Body | None:
            body = read_tenant(troupe, "team-a")
            within = conditions(body).get("WithinBudget", {})
            return body if within.get("reason") == "TokenBudgetExceeded" else None

        tenant_body = wait_for(spent, timeout=WAIT, what="the Tenant to say its budget is spent")
        assert tenant_body["status"]["budgetRemaining"] == 0
        wait_event(troupe, "default", "team-a", "TokenBudgetExceeded")

        troupe.custom.patch_cluster_custom_object(
            GROUP, VERSION, "tenants", "team-a", {"spec": {"limits": {"tokenBudget": 10**9}}}
        )

        def ended() -> Body | None:
            status: Body = run(troupe, "capped").get("status") or {}
            return status if status.get("phase") in ENDED else None

        final = wait_for(ended, timeout=WAIT, what="the run to finish once the budget is raised")
    assert final["phase"] == "Succeeded", final.get("message")
    assert task_jobs(troupe) == ["a", "c", "slow"]
