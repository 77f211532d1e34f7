"""An Agent's ``model.maxConcurrency``, and its adaptive cap, enforced by the real operator.

The cap is checked by sampling the task pods the Job runner runs every 50 ms
across two Workflows; the adaptive cap against a stub that answers 429 above 2
requests in flight, by the Agent's ``status.concurrency`` and the stub's count
of 429s, compared with the same runs under a fixed cap.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.test_workflow_faults import ENDED
from tests.integration.troupe_driver import (
    GROUP,
    VERSION,
    Troupe,
    agent,
    reply_naming_the_task,
    workflow,
)
from tests.support.openai_stub import OpenAIStub
from tests.support.waiting import wait_for

Body = dict[str, Any]
NAMESPACE = "default"

# Up to 24 task processes per run, each importing LangChain, a few at a time.
pytestmark = pytest.mark.timeout(900)


def apply(troupe: Troupe, *bodies: Body) -> None:
    for body in bodies:
        plural = body["kind"].lower() + "s"
        troupe.custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, plural, body)


def read(troupe: Troupe, plural: str, name: str) -> Body:
    body: Body = troupe.custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, plural, name)
    return body


def run_two(
    troupe: Troupe, stub: OpenAIStub, tag: str, tasks: int, retries: int = 0, **model: Any
) -> dict[str, Any]:
    """Two Workflows of ``tasks`` parallel tasks on the Agent ``tag``; what was sampled every
    50 ms (running task pods, the runs' reasons, the Agent's effective caps in turn)."""
    runs_of = (f"{tag}-left", f"{tag}-right")
    running: list[int] = []
    reasons: set[str] = set()
    caps: list[int] = []
    timeline: list[int] = []

    def sample() -> list[Body] | None:
        pods = troupe.core.list_namespaced_pod(NAMESPACE, label_selector="troupe.dev/workflow")
        running.append(sum(1 for pod in pods.items if pod.status and pod.status.phase == "Running"))
        concurrency = (read(troupe, "agents", tag).get("status") or {}).get("concurrency")
        if concurrency:
            timeline.append(concurrency["effective"])
            if not caps or caps[-1] != concurrency["effective"]:
                caps.append(concurrency["effective"])
        runs = [read(troupe, "workflows", name) for name in runs_of]
        for body in runs:
            for condition in (body.get("status") or {}).get("conditions") or ():
                if condition["type"] == "Ready":
                    reasons.add(condition["reason"])
        ended = all((body.get("status") or {}).get("phase") in ENDED for body in runs)
        return runs if ended else None

    with troupe.operator():
        apply(troupe, agent(tag, stub.base_url, maxRetries=10, **model))
        for name in runs_of:
            steps = [{"name": f"t{i}", "agent": tag, "retries": retries} for i in range(tasks)]
            apply(troupe, workflow(name, steps))
        runs = wait_for(sample, timeout=480, interval=0.05, what="both Workflows to end")
        final = (read(troupe, "agents", tag).get("status") or {}).get("concurrency")
    return {
        "phases": [body["status"]["phase"] for body in runs],
        "messages": [body["status"].get("message") for body in runs],
        "running": running,
        "reasons": reasons,
        "caps": caps,
        "timeline": timeline,
        "final": final,
    }


def test_max_concurrency_caps_an_agents_pods_across_workflows(troupe: Troupe) -> None:
    with OpenAIStub(reply=reply_naming_the_task) as stub:
        seen = run_two(troupe, stub, "worker", 5, maxConcurrency=2)
    assert seen["phases"] == ["Succeeded", "Succeeded"]
    assert max(seen["running"]) == 2
    assert "AgentConcurrencyLimit" in seen["reasons"]
    assert seen["final"]["limit"] == seen["final"]["effective"] == 2


def test_adaptive_concurrency_follows_an_endpoint_that_throttles(troupe: Troupe) -> None:
    """A cap of 5 against an endpoint that serves 2 at once, each answer taking 15 s: long
    enough against a pod's start (seconds on a loaded machine) that five pods keep more
    than 2 requests in flight, so the fixed cap is throttled throughout, while the adaptive
    one comes down to 2 and stays there."""
    counts: dict[str, int] = {}
    seen: dict[str, Any] = {}
    for tag, adaptive in (("fixed", False), ("adaptive", True)):
        with OpenAIStub(reply=reply_naming_the_task) as stub:
            stub.limit_concurrency(2, hold=15.0, retry_after=3.0)
            seen[tag] = run_two(
                troupe, stub, tag, 6, retries=5, maxConcurrency=5, adaptiveConcurrency=adaptive
            )
            counts[tag] = stub.throttled
    print(
        f"429s without adaptive concurrency: {counts['fixed']}, with: {counts['adaptive']}; "
        f"effective caps with: {seen['adaptive']['caps']}, final {seen['adaptive']['final']}"
    )
    for tag in ("fixed", "adaptive"):
        assert seen[tag]["phases"] == ["Succeeded", "Succeeded"], seen[tag]["messages"]
    caps = seen["adaptive"]["caps"]
    assert caps[0] == 5
    assert min(caps) <= 2, caps
    timeline = seen["adaptive"]["timeline"]
    settled = timeline[next(i for i, cap in enumerate(timeline) if cap <= 2) :]
    at_most_2 = sum(1 for cap in settled if cap <= 2) / len(settled)
    print(f"share of samples at a cap of 2 or below once it first got there: {at_most_2:.0%}")
    assert at_most_2 > 0.5, caps
    assert counts["adaptive"] < counts["fixed"]
