"""Priorities and deadlines end to end: the real operator, Job runner, task processes and the
OpenAI stub, whose log of requests is the order in which the tasks started."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.integration.test_run_control import asked_for
from tests.integration.test_tenant_limits import NAMESPACE, apply, ready_reason, run
from tests.integration.test_tenants import create, tenant, wait_ready
from tests.integration.test_workflow_faults import ENDED
from tests.integration.troupe_driver import TASK_MARK, Troupe, agent, reply_naming_the_task
from tests.integration.troupe_driver import workflow as workflow_of
from tests.support.openai_stub import Fault, OpenAIStub
from tests.support.waiting import wait_for

# Task processes import LangChain one after another; on a loaded machine that takes minutes.
pytestmark = pytest.mark.timeout(480)
WAIT = 120.0
Body = dict[str, Any]


def started(stub: OpenAIStub) -> list[str]:
    """The tasks in the order their model calls reached the stub."""
    found = (TASK_MARK.search(str(request.body)) for request in stub.chat_requests)
    return [match.group(1) for match in found if match]


def waiting(status: Body, task: str) -> Body:
    return ((status.get("tasks") or {}).get(task) or {}).get("waiting") or {}


def test_parallelism_one_starts_ready_tasks_by_priority(troupe: Troupe) -> None:
    release = threading.Event()
    tasks = [{"name": "p1", "priority": 1}, {"name": "p5", "priority": 5}, {"name": "p3"}]
    with OpenAIStub(reply=reply_naming_the_task) as stub:
        stub.inject(Fault.held(release))  # the first task waits, the others are seen waiting
        troupe.apply(
            agent("worker", stub.base_url),
            workflow_of("ordered", tasks, parallelism=1, priority=3),
        )
        with troupe.operator():

            def held() -> Body | None:
                status = troupe.status("ordered")
                return status if waiting(status, "p1") and asked_for(stub, "p5") else None

            status = wait_for(held, timeout=WAIT, what="p5 running, p1 and p3 waiting")
            assert status["tasks"]["p5"]["phase"] == "Running"
            assert {task: waiting(status, task).get("reason") for task in ("p1", "p3")} == {
                "p1": "Parallelism",
                "p3": "Parallelism",
            }
            # p3 has the Workflow's priority.
            assert (waiting(status, "p1")["priority"], waiting(status, "p3")["priority"]) == (1, 3)
            release.set()
            final = troupe.wait_for_phase("ordered", "Succeeded", "Failed", timeout=WAIT)
    assert final["phase"] == "Succeeded", final.get("message")
    assert started(stub) == ["p5", "p3", "p1"]
    assert not any(task.get("waiting") for task in final["tasks"].values())


def test_under_a_tenant_cap_of_one_the_higher_priority_workflow_goes_first_and_both_finish(
    troupe: Troupe,
) -> None:
    """low starts alone and holds the one slot (its first call held by the stub); high
    arrives; every slot that frees goes to high until it has nothing left, then to low."""
    create(troupe, tenant("team-a", [NAMESPACE], limits={"maxConcurrentTasks": 1}))
    release = threading.Event()
    with OpenAIStub(reply=reply_naming_the_task) as stub, troupe.operator():
        stub.inject(Fault.held(release))
        wait_ready(troupe, "team-a")
        apply(troupe, agent("worker", stub.base_url))
        apply(troupe, workflow_of("low", [{"name": f"low-{i}"} for i in range(3)]))

        def low_holds_the_slot() -> bool:
            return asked_for(stub, "low-0") == 1 and ready_reason(run(troupe, "low")) == (
                "TenantConcurrencyLimit"
            )

        wait_for(low_holds_the_slot, timeout=WAIT, what="low-0 running, low's others held")
        apply(troupe, workflow_of("high", [{"name": "high-0"}, {"name": "high-1"}], priority=10))

        def high_held() -> Body | None:
            status: Body = run(troupe, "high").get("status") or {}
            return status if waiting(status, "high-0").get("reason") else None

        status = wait_for(high_held, timeout=WAIT, what="high held back by the Tenant's cap")
        assert waiting(status, "high-0")["reason"] == "TenantConcurrencyLimit"
        release.set()

        def ended() -> list[Body] | None:
            statuses = [run(troupe, name).get("status") or {} for name in ("low", "high")]
            return statuses if all(s.get("phase") in ENDED for s in statuses) else None

        finals = wait_for(ended, timeout=2 * WAIT, what="both Workflows to end")
    assert [final["phase"] for final in finals] == ["Succeeded", "Succeeded"]
    assert started(stub) == ["low-0", "high-0", "high-1", "low-1", "low-2"]


def test_a_passed_deadline_fails_the_run_and_deletes_its_running_job(troupe: Troupe) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    past, soon = now - timedelta(seconds=3), now + timedelta(seconds=20)
    release = threading.Event()
    with OpenAIStub(reply=reply_naming_the_task) as stub:
        stub.inject(Fault.held(release))  # "due"'s task is still running at its deadline
        troupe.apply(
            agent("worker", stub.base_url),
            workflow_of("late", [{"name": "late-a"}], deadline=past.isoformat()),
            workflow_of("due", [{"name": "due-a"}], deadline=soon.isoformat()),
        )
        with troupe.operator():
            late = troupe.wait_for_phase("late", "Failed", "Succeeded", timeout=WAIT)
            assert (late["phase"], late["tasks"]["late-a"]["phase"]) == ("Failed", "Skipped")
            wait_for(lambda: asked_for(stub, "due-a") == 1, timeout=WAIT, what="due-a's call")
            due = troupe.wait_for_phase("due", "Failed", "Succeeded", timeout=WAIT)
            wait_for(lambda: troupe.jobs("due") == [], timeout=WAIT, what="due-a's Job deleted")
            release.set()
    for status in (late, due):
        ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        assert ready["reason"] == "DeadlineExceeded"
        assert "passed (spec.deadline)" in status["message"]
    assert due["tasks"]["due-a"]["phase"] == "Cancelled"
    assert troupe.jobs("late") == [] and asked_for(stub, "late-a") == 0
    assert "WorkflowFailed" in troupe.event_reasons("due")
