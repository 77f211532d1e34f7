"""Agents chosen by skill and retries on fallback Agents, end to end: the real operator, Job
runner, task processes and the OpenAI stub. Status says which Agent ran each attempt."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.troupe_driver import Troupe, agent, reply_naming_the_task, workflow
from tests.support.openai_stub import Fault, OpenAIStub
from tests.support.waiting import wait_for


@pytest.fixture
def stub() -> Iterator[OpenAIStub]:
    with OpenAIStub(reply=reply_naming_the_task) as server:
        yield server


def skilled(name: str, base_url: str, *skills: str, **model: Any) -> dict[str, Any]:
    document = agent(name, base_url, **model)
    document["spec"]["skills"] = list(skills)
    return document


def selecting(name: str, *skills: str) -> dict[str, Any]:
    return workflow(name, [{"name": "t", "agentSelector": {"skills": list(skills)}}])


def ready_reason(troupe: Troupe, name: str) -> str | None:
    conditions = {c["type"]: c for c in troupe.status(name).get("conditions", [])}
    return conditions.get("Ready", {}).get("reason")


def test_a_task_needing_two_skills_runs_on_the_agent_that_has_both(
    troupe: Troupe, stub: OpenAIStub
) -> None:
    troupe.apply(
        skilled("a", stub.base_url, "x"),
        skilled("b", stub.base_url, "x", "y"),
        selecting("pick", "x", "y"),
    )
    with troupe.operator():
        status = troupe.wait_for_phase("pick", "Succeeded", "Failed", timeout=90)
    assert status["phase"] == "Succeeded", status.get("message")
    assert status["tasks"]["t"]["agents"] == ["b"]
    [job] = troupe.jobs("pick")
    assert job.metadata.annotations["troupe.dev/agent"] == "b"


def test_no_matching_agent_waits_and_the_run_starts_when_one_is_applied(
    troupe: Troupe, stub: OpenAIStub
) -> None:
    troupe.apply(skilled("a", stub.base_url, "x"), selecting("wanting", "z"))
    with troupe.operator(resync_seconds=120):  # only the Agent's own event can wake the run
        wait_for(
            lambda: ready_reason(troupe, "wanting") == "NoMatchingAgent",
            timeout=60,
            what="the run waiting for an Agent with skill z",
        )
        status = troupe.status("wanting")
        assert status["phase"] == "Pending" and "skills [z]" in status["message"]
        assert troupe.event_reasons("wanting").count("NoMatchingAgent") == 1
        assert troupe.jobs("wanting") == []
        troupe.apply(skilled("zed", stub.base_url, "z"))
        status = troupe.wait_for_phase("wanting", "Succeeded", "Failed", timeout=90)
    assert status["phase"] == "Succeeded", status.get("message")
    assert status["tasks"]["t"]["agents"] == ["zed"]


def test_a_primary_answering_503_is_retried_on_its_fallback(
    troupe: Troupe, stub: OpenAIStub
) -> None:
    stub.fail_model("primary-model", Fault.unavailable())
    task = {"name": "t", "agent": "primary", "fallbackAgents": ["backup"], "retries": 1}
    primary = agent("primary", stub.base_url)
    primary["spec"]["model"]["name"] = "primary-model"
    troupe.apply(primary, agent("backup", stub.base_url), workflow("failover", [task]))
    with troupe.operator():
        status = troupe.wait_for_phase("failover", "Succeeded", "Failed", timeout=90)
    assert status["phase"] == "Succeeded", status.get("message")
    task_status = status["tasks"]["t"]
    assert task_status["attempts"] == 2
    assert task_status["agents"] == ["primary", "backup"]
    assert task_status["calls"]["failed"] == {"503": 1}
    models = [request.body["model"] for request in stub.chat_requests if request.body]
    assert models == ["primary-model", "stub-model"]
