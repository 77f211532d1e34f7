"""The Workflow controller end to end: the real operator, Job runner, agent runtime, LLM stub.

Every task here is a real process of the agent runtime's task mode, started
by the Job runner from the Job the operator created, calling the OpenAI stub
through langchain-openai and writing its output ConfigMap through the API.
"""

from __future__ import annotations

import json
import pathlib
import threading
import time
from collections import Counter
from collections.abc import Iterator

import kubernetes
import pytest

from tests.integration.troupe_driver import (
    TASK_MARK,
    Troupe,
    agent,
    reply_naming_the_task,
    workflow,
)
from tests.support.jobrunner import JobRunner
from tests.support.kubectl import kubectl
from tests.support.openai_stub import Fault, OpenAIStub
from tests.support.waiting import wait_for

UNREACHABLE = "http://127.0.0.1:9/v1"  # the discard port: connection refused at once


@pytest.fixture
def stub() -> Iterator[OpenAIStub]:
    with OpenAIStub(reply=reply_naming_the_task) as server:
        yield server


def prompts_by_task(stub: OpenAIStub) -> dict[str, str]:
    """What each task sent the model as its task: the last user message, by ``TASK=`` mark."""
    prompts = {}
    for request in stub.chat_requests:
        user = [m["content"] for m in (request.body or {})["messages"] if m["role"] == "user"]
        found = TASK_MARK.search(str(user[-1])) if user else None
        if found:
            prompts[found.group(1)] = str(user[-1])
    return prompts


DAGS = {
    "serial": [
        {"name": "research"},
        {
            "name": "plan",
            "dependsOn": ["research"],
            "prompt": "TASK=plan {{ tasks.research.output }}",
        },
        {"name": "write", "dependsOn": ["plan"], "prompt": "TASK=write {{ tasks.plan.output }}"},
    ],
    "fan-in": [
        {"name": "a"},
        {"name": "b"},
        {"name": "c"},
        {
            "name": "merge",
            "dependsOn": ["a", "b", "c"],
            "prompt": "TASK=merge {{ tasks.a.output }} {{ tasks.b.output }} {{ tasks.c.output }}",
        },
    ],
    "diamond": [
        {"name": "top"},
        {"name": "left", "dependsOn": ["top"], "prompt": "TASK=left {{ tasks.top.output }}"},
        {"name": "right", "dependsOn": ["top"], "prompt": "TASK=right {{ tasks.top.output }}"},
        {
            "name": "bottom",
            "dependsOn": ["left", "right"],
            "prompt": "TASK=bottom {{ tasks.left.output }} {{ tasks.right.output }}",
        },
    ],
}


@pytest.mark.parametrize("shape", list(DAGS))
def test_dag_succeeds_with_upstream_outputs_in_every_prompt(
    troupe: Troupe, stub: OpenAIStub, shape: str
) -> None:
    tasks = DAGS[shape]
    troupe.apply(agent("worker", stub.base_url), workflow(shape, [dict(t) for t in tasks]))
    with troupe.operator():
        status = troupe.wait_for_phase(shape, "Succeeded", "Failed", timeout=90)
    assert status["phase"] == "Succeeded", status.get("message")
    assert status["progress"] == f"{len(tasks)}/{len(tasks)}"
    prompts = prompts_by_task(stub)
    for task in tasks:
        for upstream in task.get("dependsOn", []):
            assert prompts[task["name"]].count(f"output-of-{upstream}") == 1, "sent twice"
        entry = status["tasks"][task["name"]]
        assert entry["phase"] == "Succeeded" and entry["attempts"] == 1
        assert entry["preview"] == f"output-of-{task['name']}"
        assert entry["usage"]["totalTokens"] > 0
    sent = [json.dumps(r.body) for r in stub.chat_requests]
    assert len(sent) == len(tasks)
    assert any("output-of-" in body for body in sent) or len(tasks) == 1
    assert status["usage"]["totalTokens"] == sum(
        status["tasks"][t["name"]]["usage"]["totalTokens"] for t in tasks
    )
    reasons = Counter(troupe.event_reasons(shape))
    assert reasons == {"TaskSucceeded": len(tasks), "WorkflowSucceeded": 1}
    assert {c["type"]: c["status"] for c in status["conditions"]}["Succeeded"] == "True"


def test_task_failing_twice_then_succeeding_within_its_retries(
    troupe: Troupe, stub: OpenAIStub
) -> None:
    stub.inject(Fault.server_error(), Fault.server_error())
    troupe.apply(agent("worker", stub.base_url), workflow("flaky", [{"name": "a", "retries": 2}]))
    with troupe.operator():
        status = troupe.wait_for_phase("flaky", "Succeeded", "Failed", timeout=60)
    assert status["phase"] == "Succeeded", status.get("message")
    assert status["tasks"]["a"]["attempts"] == 3
    run = troupe.run("flaky")
    assert sorted(job.metadata.name for job in troupe.jobs("flaky")) == [
        run.job_name("a", attempt) for attempt in (1, 2, 3)
    ]
    assert Counter(troupe.event_reasons("flaky"))["RetryScheduled"] >= 1


@pytest.mark.parametrize("fail_fast", [False, True])
def test_task_exhausting_its_retries_fails_the_workflow(
    troupe: Troupe, stub: OpenAIStub, fail_fast: bool
) -> None:
    tasks = [
        {"name": "broken", "agent": "offline", "retries": 1},
        {"name": "after-broken", "dependsOn": ["broken"]},
        {"name": "slow-sibling", "prompt": "TASK=slow-sibling"},
    ]
    # with failFast the sibling must still be running when `broken` has failed twice, however
    # slowly two task processes start on a loaded machine; without, it must finish
    stub.inject(Fault.slow(60 if fail_fast else 4))
    troupe.apply(
        agent("worker", stub.base_url),
        agent("offline", UNREACHABLE),
        workflow("doomed", tasks, failFast=fail_fast),
    )
    with troupe.operator():
        status = troupe.wait_for_phase("doomed", "Failed", "Succeeded", timeout=60)
    assert status["phase"] == "Failed"
    broken = status["tasks"]["broken"]
    assert broken["phase"] == "Failed" and broken["attempts"] == 2
    assert "offline" in broken["message"] and "stub-model" in broken["message"]
    assert "'broken' failed" in status["message"]
    assert status["tasks"]["after-broken"]["phase"] == "Skipped"
    sibling = status["tasks"]["slow-sibling"]["phase"]
    assert sibling == ("Cancelled" if fail_fast else "Succeeded")


def test_permanent_failure_is_not_retried(troupe: Troupe, stub: OpenAIStub) -> None:
    stub.inject(Fault.unauthorized())
    troupe.apply(agent("worker", stub.base_url), workflow("denied", [{"name": "a", "retries": 3}]))
    with troupe.operator():
        status = troupe.wait_for_phase("denied", "Failed", "Succeeded", timeout=60)
    task = status["tasks"]["a"]
    assert status["phase"] == "Failed" and task["attempts"] == 1
    assert "401" in task["message"]
    assert len(stub.chat_requests) == 1


def test_task_timeout_ends_the_attempt(troupe: Troupe, stub: OpenAIStub) -> None:
    stub.inject(Fault.slow(30))
    troupe.apply(
        agent("worker", stub.base_url, timeoutSeconds=60),
        workflow("late", [{"name": "a", "timeoutSeconds": 2}]),
    )
    with troupe.operator():
        status = troupe.wait_for_phase("late", "Failed", "Succeeded", timeout=60)
    task = status["tasks"]["a"]
    assert status["phase"] == "Failed"
    assert "timed out" in task["message"] or "deadline" in task["message"].lower()


def test_workflow_timeout_stops_running_tasks(troupe: Troupe, stub: OpenAIStub) -> None:
    stub.inject(Fault.slow(30))
    troupe.apply(
        agent("worker", stub.base_url, timeoutSeconds=60),
        workflow("overdue", [{"name": "a"}, {"name": "b", "dependsOn": ["a"]}], timeoutSeconds=3),
    )
    with troupe.operator():
        status = troupe.wait_for_phase("overdue", "Failed", "Succeeded", timeout=60)
        wait_for(lambda: not troupe.jobs("overdue"), timeout=10, what="the running Job deleted")
    assert "timed out" in status["message"]
    assert status["tasks"]["a"]["phase"] == "Cancelled"
    assert status["tasks"]["b"]["phase"] == "Skipped"


def test_parallelism_is_never_exceeded(troupe: Troupe, stub: OpenAIStub) -> None:
    tasks = [{"name": f"t{i}"} for i in range(5)]
    troupe.apply(agent("worker", stub.base_url), workflow("capped", tasks, parallelism=2))
    most_running = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal most_running
        batch = kubernetes.client.BatchV1Api(troupe.api)
        while not done.is_set():
            jobs = batch.list_namespaced_job("default").items
            running = [j for j in jobs if not (j.status and j.status.conditions)]
            most_running = max(most_running, len(running))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        with troupe.operator():
            status = troupe.wait_for_phase("capped", "Succeeded", "Failed", timeout=90)
    finally:
        done.set()
        sampler.join(5)
    assert status["phase"] == "Succeeded"
    assert most_running == 2


def test_invalid_workflow_is_an_error_and_creates_nothing(troupe: Troupe, stub: OpenAIStub) -> None:
    cyclic = [{"name": "a", "dependsOn": ["b"]}, {"name": "b", "dependsOn": ["a"]}]
    troupe.apply(agent("worker", stub.base_url), workflow("cyclic", cyclic))
    with troupe.operator():
        status = troupe.wait_for_phase("cyclic", "Error", timeout=20)
        time.sleep(1)
        assert troupe.jobs("cyclic") == []
    assert "dependency cycle: a -> b -> a" in status["message"]
    failed = {c["type"]: c for c in status["conditions"]}["Failed"]
    assert failed["status"] == "True" and failed["reason"] == "InvalidSpec"
    assert troupe.event_reasons("cyclic").count("InvalidSpec") == 1


def test_deleting_a_running_workflow_removes_its_children(
    troupe: Troupe, stub: OpenAIStub, job_runner: JobRunner
) -> None:
    stub.inject(Fault.slow(30))
    troupe.apply(
        agent("worker", stub.base_url, timeoutSeconds=60), workflow("doomed", [{"name": "a"}])
    )
    with troupe.operator():
        troupe.wait_for_phase("doomed", "Running", timeout=20)
        wait_for(
            lambda: [
                pod
                for pod in troupe.core.list_namespaced_pod("default").items
                if pod.status.phase == "Running"
            ],
            timeout=20,
            what="the task's pod running",
        )
        wait_for(lambda: stub.chat_requests, timeout=20, what="the task calling the model")
        troupe.delete_workflow("doomed")

        def gone() -> bool:
            pods = troupe.core.list_namespaced_pod("default").items
            return not troupe.jobs("doomed") and not troupe.config_maps("doomed") and not pods

        wait_for(gone, timeout=20, what="Jobs, pods and ConfigMaps removed")


def test_restarted_operator_adopts_running_jobs_and_duplicates_nothing(
    troupe: Troupe, stub: OpenAIStub
) -> None:
    stub.inject(Fault.slow(2), Fault.slow(2), Fault.slow(2))
    tasks = [
        {"name": "one"},
        {"name": "two", "dependsOn": ["one"], "prompt": "TASK=two {{ tasks.one.output }}"},
        {"name": "three", "dependsOn": ["two"], "prompt": "TASK=three {{ tasks.two.output }}"},
    ]
    troupe.apply(agent("worker", stub.base_url), workflow("resilient", tasks))
    with troupe.operator():
        wait_for(
            lambda: (
                troupe.status("resilient").get("tasks", {}).get("two", {}).get("phase") == "Running"
            ),
            timeout=30,
            what="task two running",
        )
    # The operator is gone while task two runs; a new one takes over.
    with troupe.operator():
        status = troupe.wait_for_phase("resilient", "Succeeded", "Failed", timeout=60)
    assert status["phase"] == "Succeeded", status.get("message")
    names = sorted(job.metadata.name for job in troupe.jobs("resilient"))
    run = troupe.run("resilient")
    assert names == sorted(run.job_name(t["name"], 1) for t in tasks)
    assert all(status["tasks"][t["name"]]["attempts"] == 1 for t in tasks)
    prompts = [str(r.body) for r in stub.chat_requests]
    assert len(prompts) == 3, "a task ran twice"


def test_long_prompts_leave_no_kopf_annotation(troupe: Troupe, stub: OpenAIStub) -> None:
    long_prompt = "TASK=a " + "x" * 300_000
    troupe.apply(
        agent("worker", stub.base_url),
        workflow("verbose", [{"name": "a", "prompt": long_prompt[:65_536]}] * 1),
    )
    with troupe.operator():
        troupe.wait_for_phase("verbose", "Succeeded", "Failed", timeout=60)
    metadata = troupe.workflow("verbose")["metadata"]
    assert not (metadata.get("annotations") or {})
    assert not metadata.get("finalizers")


def test_kubectl_applies_the_example_and_shows_its_run(
    troupe: Troupe, kubeconfig: pathlib.Path
) -> None:
    example = pathlib.Path(__file__).parents[2] / "examples" / "serial-pipeline.yaml"
    kubectl(kubeconfig, "apply", "--validate=false", "-f", str(example))
    with troupe.operator():
        status = troupe.wait_for_phase("launch-brief", "Succeeded", "Failed", timeout=90)
    assert status["phase"] == "Succeeded", status.get("message")
    [header, row] = [line.split() for line in kubectl(kubeconfig, "get", "workflows").splitlines()]
    assert header == ["NAME", "PHASE", "PROGRESS", "TOKENS", "AGE", "DURATION"]
    assert row[:3] == ["launch-brief", "Succeeded", "4/4"]
    assert row[5] == status["duration"]
    preview = status["tasks"]["review"]["preview"]
    assert preview.startswith("[scripted placeholder")
