"""Runs that meet trouble end in a defined, documented state, and cost only themselves.

The real operator, Job runner, agent runtime and OpenAI stub, as in
test_workflow_controller.py; each test breaks one thing (a Job deleted under
a task, an upstream output gone, an Agent deleted, a hostile template) and
checks the state the run ends in, with its reason, and that the operator
keeps serving other Workflows meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterator

import kubernetes
import pytest

from tests.integration.troupe_driver import Troupe, agent, reply_naming_the_task, workflow
from tests.support.emulator import EmulatedCluster
from tests.support.fixtures import RunOperator
from tests.support.jobrunner import JobRunner
from tests.support.openai_stub import Fault, OpenAIStub
from tests.support.waiting import wait_for


@pytest.fixture
def troupe(
    emulator: EmulatedCluster,
    kube_api: kubernetes.client.ApiClient,
    job_runner: JobRunner,
    run_operator: RunOperator,
) -> Troupe:
    return Troupe(kube_api, run_operator)


@pytest.fixture
def stub() -> Iterator[OpenAIStub]:
    with OpenAIStub(reply=reply_naming_the_task) as server:
        yield server


def task_phase(troupe: Troupe, name: str, task: str) -> str | None:
    phase: str | None = troupe.status(name).get("tasks", {}).get(task, {}).get("phase")
    return phase


def test_a_job_deleted_under_its_task_is_a_failed_attempt_and_is_retried(
    troupe: Troupe, stub: OpenAIStub
) -> None:
    stub.inject(Fault.slow(30))
    troupe.apply(
        agent("worker", stub.base_url, timeoutSeconds=60),
        workflow("orphaned", [{"name": "a", "retries": 1}]),
    )
    with troupe.operator():
        wait_for(lambda: stub.chat_requests, timeout=30, what="attempt 1 calling the model")
        batch = kubernetes.client.BatchV1Api(troupe.api)
        batch.delete_namespaced_job(
            troupe.run("orphaned").job_name("a", 1), "default", propagation_policy="Background"
        )
        status = troupe.wait_for_phase("orphaned", "Succeeded", "Failed", timeout=60)
    task = status["tasks"]["a"]
    assert status["phase"] == "Succeeded" and task["attempts"] == 2
    assert "RetryScheduled" in troupe.event_reasons("orphaned")


def test_an_upstream_output_deleted_before_its_downstream_starts_fails_that_task(
    troupe: Troupe, stub: OpenAIStub
) -> None:
    tasks = [
        {"name": "first"},
        {"name": "gate", "dependsOn": ["first"], "agent": "slow"},
        {"name": "last", "dependsOn": ["gate"], "prompt": "TASK=last {{ tasks.first.output }}"},
    ]
    stub.inject(Fault.slow(0), Fault.slow(6))
    troupe.apply(
        agent("worker", stub.base_url),
        agent("slow", stub.base_url, timeoutSeconds=60),
        workflow("lossy", tasks),
    )
    with troupe.operator():
        wait_for(
            lambda: any("TASK=gate" in str(r.body) for r in stub.chat_requests),
            timeout=60,
            what="gate calling the model (it has read first's output)",
        )
        troupe.core.delete_namespaced_config_map(
            troupe.run("lossy").output_config_map("first"), "default"
        )
        status = troupe.wait_for_phase("lossy", "Succeeded", "Failed", timeout=60)
    last = status["tasks"]["last"]
    assert status["phase"] == "Failed" and last["phase"] == "Failed"
    assert "upstream task 'first'" in last["message"] and "is gone" in last["message"]
    assert last["attempts"] == 1, "a missing upstream output is permanent"


def test_a_task_waits_for_its_deleted_agent_and_resumes_when_it_is_back(
    troupe: Troupe, stub: OpenAIStub
) -> None:
    stub.inject(Fault.slow(4))
    tasks = [{"name": "a"}, {"name": "b", "dependsOn": ["a"]}]
    troupe.apply(agent("worker", stub.base_url, timeoutSeconds=60), workflow("patient", tasks))
    with troupe.operator():
        wait_for(lambda: stub.chat_requests, timeout=30, what="task a calling the model")
        troupe.custom.delete_namespaced_custom_object(
            "troupe.dev", "v1alpha1", "default", "agents", "worker"
        )

        def waiting() -> bool:
            ready = {c["type"]: c for c in troupe.status("patient").get("conditions", [])}
            return ready.get("Ready", {}).get("reason") == "AgentNotFound"

        wait_for(waiting, timeout=60, what="the run waiting for its Agent")
        assert task_phase(troupe, "patient", "a") == "Succeeded", "a running task runs on"
        troupe.apply(agent("worker", stub.base_url))
        status = troupe.wait_for_phase("patient", "Succeeded", "Failed", timeout=30)
    assert status["phase"] == "Succeeded"
    assert "AgentNotFound" in troupe.event_reasons("patient")


HOSTILE = {
    "too-long": ("{{ 'x' * 2000000 }}", "MAX_PROMPT_CHARS"),
    "nested-loops": (
        "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}",
        "to render",
    ),
    "string-bomb": ("{{ 'x' * 10**10 }}", "10000000000"),
}


def test_hostile_templates_fail_their_own_task_while_a_good_workflow_runs_on_time(
    troupe: Troupe, stub: OpenAIStub
) -> None:
    hostile = [
        workflow(name, [{"name": "evil", "prompt": prompt, "timeoutSeconds": 60}])
        for name, (prompt, _) in HOSTILE.items()
    ]
    good = workflow("good", [{"name": "a"}, {"name": "b", "dependsOn": ["a"]}])
    troupe.apply(agent("worker", stub.base_url), *hostile, good)
    with troupe.operator():
        status = troupe.wait_for_phase("good", "Succeeded", "Failed", timeout=60)
        assert status["phase"] == "Succeeded"
        for name, (_, words) in HOSTILE.items():
            ended = troupe.wait_for_phase(name, "Succeeded", "Failed", timeout=60)
            evil = ended["tasks"]["evil"]
            assert ended["phase"] == "Failed" and evil["attempts"] == 1, name
            assert words in evil["message"] and "prompt template" in evil["message"], evil
    assert all("TASK=" in str(r.body) for r in stub.chat_requests), "a hostile prompt was sent"
