"""forEach end to end: the real operator, Job runner, task processes and the OpenAI stub.

The planner's pod reports only how many topics it found; the operator expands the
researcher into that many instances, each pod reads its own topic from the planner's
output, and the join's pod reads all three outputs. The operator is restarted while the
instances run: none runs twice.
"""

from __future__ import annotations

import contextlib
import json
import threading
from typing import Any

from tests.integration.test_workflow_faults import ParallelismSampler
from tests.integration.troupe_driver import Troupe, agent, reply_naming_the_task, workflow
from tests.support.openai_stub import Answer, Fault, OpenAIStub, ToolCall
from tests.support.waiting import wait_for
from troupe_agent.structured import OUTPUT_TOOL

TOPICS = ["alpha", "beta", "gamma"]
PLAN_SCHEMA = {
    "type": "object",
    "properties": {"topics": {"type": "array", "items": {"type": "string"}}},
    "required": ["topics"],
}


def research_reply(body: dict[str, Any]) -> Answer:
    """The planner gets the topics; a researcher notes on its topic; others their task name."""
    tools = [tool["function"]["name"] for tool in body.get("tools") or []]
    if OUTPUT_TOOL in tools:
        return ToolCall(OUTPUT_TOOL, {"topics": TOPICS})
    prompt = json.dumps(body["messages"])
    topic = next((t for t in TOPICS if f"TOPIC={t}" in prompt), None)
    return f"notes-on-{topic}" if topic else reply_naming_the_task(body)


def fan_out_tasks() -> list[dict[str, Any]]:
    return [
        {"name": "plan", "outputSchema": PLAN_SCHEMA, "prompt": "TASK=plan list three topics"},
        {
            "name": "research",
            "dependsOn": ["plan"],
            "prompt": "TASK=research TOPIC={{ item }}",
            "forEach": {"from": "tasks.plan.json.topics", "maxItems": 5, "parallelism": 2},
        },
        {
            "name": "join",
            "dependsOn": ["research"],
            "prompt": "TASK=join {{ tasks.research.output }}",
        },
    ]


def phases(troupe: Troupe, name: str) -> dict[str, str]:
    tasks = (troupe.workflow(name).get("status") or {}).get("tasks") or {}
    return {task: body.get("phase", "") for task, body in tasks.items()}


def test_three_topics_run_three_instances_two_at_a_time_once_each_across_a_restart(
    troupe: Troupe,
) -> None:
    release = threading.Event()
    operator = contextlib.ExitStack()
    with OpenAIStub(reply=research_reply) as stub, ParallelismSampler(troupe) as sampler, operator:
        operator.enter_context(troupe.operator())
        troupe.apply(agent("worker", stub.base_url))
        stub.inject(Fault(), *(Fault.held(release) for _ in TOPICS))  # the plan, then research
        troupe.apply(workflow("fan", fan_out_tasks()))

        def two_held() -> dict[str, str] | None:
            now = phases(troupe, "fan")
            running = [t for t, p in now.items() if t.startswith("research.") and p == "Running"]
            return now if len(running) == 2 and len(stub.chat_requests) == 3 else None

        held = wait_for(two_held, timeout=90, what="two researchers to be held by the stub")
        assert held["research.2"] == "Pending" and held["research"] == "Running"
        operator.close()  # a new operator, with nothing in memory, takes over mid fan-out
        operator.enter_context(troupe.operator())
        release.set()
        status = troupe.wait_for_phase("fan", "Succeeded", "Failed", timeout=90)

    assert status["phase"] == "Succeeded", status.get("message")
    assert status["tasks"]["research"]["items"] == 3
    assert status["progress"] == "3/3"
    assert sampler.most["fan"] <= 2
    jobs = sorted(
        (job.metadata.labels["troupe.dev/task"], job.metadata.labels["troupe.dev/attempt"])
        for job in troupe.jobs("fan")
    )
    assert jobs == [("join", "1"), ("plan", "1")] + [(f"research.{i}", "1") for i in range(3)]
    prompts = [json.dumps(request.body["messages"]) for request in stub.chat_requests]
    assert sum("TASK=research" in prompt for prompt in prompts) == 3
    [join] = [prompt for prompt in prompts if "TASK=join" in prompt]
    for index, topic in enumerate(TOPICS):
        assert f"## research.{index}\\nnotes-on-{topic}" in join
    assert "TaskExpanded" in troupe.event_reasons("fan")
