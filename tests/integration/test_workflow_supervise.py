"""The supervisor loop end to end: the real operator, Job runner, task processes and the OpenAI
stub playing the supervisor's model (its decisions are tool calls) and the members'. The
operator sees only each turn's decision shape; instructions and answers go pod to pod."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest

from tests.integration.troupe_driver import Troupe, agent, workflow
from tests.support.openai_stub import Answer, Fault, OpenAIStub, ToolCall, default_reply
from tests.support.waiting import wait_for

ANSWER = "FINAL: six times seven is 42"


def delegate(member: str, instruction: str) -> ToolCall:
    return ToolCall("delegate", {"member": member, "instruction": instruction})


def supervisor_reply(body: dict[str, Any]) -> Answer:
    """The supervisor (offered ``delegate``) decides from the turns so far; others echo."""
    tools = [tool["function"]["name"] for tool in body.get("tools") or []]
    if "delegate" not in tools:
        return default_reply(body)
    asked = str(body["messages"][-1]["content"])
    if "ALWAYS" in asked:
        return delegate("math", "Once more")
    if "THREE" in asked:
        if "was asked" in asked:
            return ToolCall("finish", {"answer": ANSWER})
        return [delegate("math", "Part 1"), delegate("writer", "Part 2"), delegate("math", "P3")]
    if "math was asked" not in asked:
        return delegate("math", "Compute 6*7")
    if "writer was asked" not in asked:
        return delegate("writer", "Write the result up")
    return ToolCall("finish", {"answer": ANSWER})


@pytest.fixture
def stub() -> Iterator[OpenAIStub]:
    with OpenAIStub(reply=supervisor_reply) as server:
        yield server


def supervised(
    troupe: Troupe, stub: OpenAIStub, name: str, request: str, **loop: Any
) -> dict[str, Any]:
    """Agents lead, math and writer on the stub; research (a supervise loop) → report."""
    tasks = [
        {
            "name": "research",
            "prompt": request,
            "supervise": {"agent": "lead", "members": ["math", "writer"], **loop},
        },
        {
            "name": "report",
            "dependsOn": ["research"],
            "prompt": "TASK=report {{ tasks.research.output }}",
        },
    ]
    document = workflow(name, tasks)
    del document["spec"]["tasks"][0]["agent"]  # a supervise task runs its own Agents
    troupe.apply(*(agent(a, stub.base_url) for a in ("lead", "math", "writer", "worker")), document)
    return document


def held(stub: OpenAIStub, what: str) -> None:
    """Wait until the stub has had four model calls, the last of them held by the test."""
    wait_for(lambda: len(stub.chat_requests) == 4, timeout=90, what=what)


def unit_attempts(status: dict[str, Any]) -> dict[str, int]:
    return {key: task["attempts"] for key, task in status["tasks"].items()}


def test_a_supervisor_delegates_to_math_then_writer_then_finishes_across_a_restart(
    troupe: Troupe, stub: OpenAIStub
) -> None:
    release = threading.Event()
    # turn 1, math, turn 2, then writer's call is held while the operator is replaced.
    stub.inject(Fault(), Fault(), Fault(), Fault.held(release))
    supervised(troupe, stub, "inquiry", "Work out six times seven, then have it written up.")
    with troupe.operator():
        held(stub, "the writer's delegation calling the model")
    release.set()
    with troupe.operator():
        status = troupe.wait_for_phase("inquiry", "Succeeded", "Failed", timeout=120)
    assert status["phase"] == "Succeeded", status.get("message")
    research = status["tasks"]["research"]
    assert research["resultOf"] == "research.turn-3"
    assert research["supervise"] == {
        "iterations": 3,
        "turns": [
            {
                "unit": "research.turn-1",
                "delegations": [{"member": "math", "unit": "research.turn-1.1"}],
                "finished": False,
            },
            {
                "unit": "research.turn-2",
                "delegations": [{"member": "writer", "unit": "research.turn-2.1"}],
                "finished": False,
            },
            {"unit": "research.turn-3", "delegations": [], "finished": True},
        ],
    }
    units = ["research.turn-1", "research.turn-1.1", "research.turn-2", "research.turn-2.1"]
    units += ["research.turn-3", "report"]
    assert {
        key: n for key, n in unit_attempts(status).items() if key != "research"
    } == dict.fromkeys(units, 1)
    run = troupe.run("inquiry")
    jobs = sorted(job.metadata.name for job in troupe.jobs("inquiry"))
    assert jobs == sorted(run.job_name(key, 1) for key in units)  # nothing ran twice
    assert len(stub.chat_requests) == 6
    outputs = troupe.config_maps("inquiry")
    assert outputs[run.output_config_map("research.turn-3")]["output"] == ANSWER
    decision = json.loads(outputs[run.output_config_map("research.turn-1")]["output"])
    assert decision == {"delegations": [{"member": "math", "instruction": "Compute 6*7"}]}
    report_prompt = str(stub.chat_requests[-1].body)
    assert f"TASK=report {ANSWER}" in report_prompt
    assert troupe.event_reasons("inquiry").count("TurnDecided") == 3


def test_a_supervisor_that_always_delegates_stops_at_max_iterations(
    troupe: Troupe, stub: OpenAIStub
) -> None:
    supervised(troupe, stub, "endless", "ALWAYS delegate", maxIterations=2)
    with troupe.operator():
        status = troupe.wait_for_phase("endless", "Succeeded", "Failed", timeout=120)
    assert status["phase"] == "Failed"
    research = status["tasks"]["research"]
    assert (research["phase"], research["reason"]) == ("Failed", "MaxIterations")
    assert research["message"] == (
        "the supervisor did not finish within maxIterations=2: turn 2 delegated again (math), "
        "which was not run"
    )
    assert research["supervise"]["iterations"] == 2
    assert research["supervise"]["turns"][-1]["delegations"] == [{"member": "math"}]
    assert status["tasks"]["report"]["phase"] == "Skipped"
    warnings = [
        event.message
        for event in troupe.core.list_namespaced_event("default").items
        if event.involved_object.name == "endless" and event.type == "Warning"
    ]
    assert any("maxIterations=2" in message for message in warnings), warnings


def test_never_more_than_max_concurrent_delegations_run_at_once(
    troupe: Troupe, stub: OpenAIStub
) -> None:
    release = threading.Event()
    stub.inject(Fault(), Fault.held(release), Fault.held(release), Fault.held(release))
    supervised(troupe, stub, "parallel", "THREE at once", maxConcurrent=3)
    most, done = 0, threading.Event()

    def delegations_running() -> int:
        jobs = kubernetes.client.BatchV1Api(troupe.api).list_namespaced_job(
            "default", label_selector="troupe.dev/workflow=parallel"
        )
        return sum(
            1
            for job in jobs.items
            if job.metadata.labels["troupe.dev/task"].count(".") == 2
            and not (job.status and job.status.conditions)
        )

    def sample() -> None:
        nonlocal most
        while not done.is_set():
            most = max(most, delegations_running())
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        with troupe.operator():
            held(stub, "three delegations calling the model at once")
            wait_for(lambda: most == 3, timeout=30, what="three delegation Jobs seen at once")
            release.set()
            status = troupe.wait_for_phase("parallel", "Succeeded", "Failed", timeout=120)
    finally:
        release.set()
        done.set()
        sampler.join(5)
    assert status["phase"] == "Succeeded", status.get("message")
    assert most == 3
    turn = status["tasks"]["research"]["supervise"]["turns"][0]
    assert [d["member"] for d in turn["delegations"]] == ["math", "writer", "math"]
