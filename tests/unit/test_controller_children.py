"""The shell's pure parts: the objects of a task attempt, and Jobs read back as observations."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from typing import Any

from troupe_operator.api import EXIT_PERMANENT, AgentSpec, TaskResult, WorkflowSpec
from troupe_operator.controller import children, observe
from troupe_operator.controller.cluster import ClusterIndex
from troupe_operator.controller.config import OperatorConfig
from troupe_operator.controller.triggers import Triggers
from troupe_operator.workflow.launch import WorkflowRef, create_task
from troupe_operator.workflow.observation import JobState

SPEC = WorkflowSpec.model_validate(
    {"tasks": [{"name": "research", "agent": "r", "prompt": "p", "timeoutSeconds": 60}]}
)
AGENT = AgentSpec.model_validate(
    {
        "role": "researcher",
        "model": {"baseURL": "http://llm/v1", "apiKeySecretRef": {"name": "openai"}},
        "resources": {"limits": {"memory": "256Mi"}},
    }
)


def action() -> Any:
    ref = WorkflowRef("team", "brief", "uid-1")
    return create_task(ref, SPEC, SPEC.tasks[0], 2, AGENT, {})


def test_job_runs_the_task_locked_down_with_key_only_from_the_secret() -> None:
    job = children.task_job(action(), "uid-1", OperatorConfig(agent_image="img:1"))
    assert job["metadata"]["name"] == "brief-research-2"
    assert job["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert job["metadata"]["labels"]["troupe.dev/attempt"] == "2"
    spec = job["spec"]
    assert spec["backoffLimit"] == 0
    assert spec["activeDeadlineSeconds"] == 60
    rule = spec["podFailurePolicy"]["rules"][0]
    assert rule["action"] == "FailJob" and rule["onExitCodes"]["values"] == [EXIT_PERMANENT]
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["serviceAccountName"] == "troupe-task"
    [container] = pod["containers"]
    assert container["image"] == "img:1"
    assert container["args"][:3] == ["task", "--input", "/etc/troupe/input/input.json"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["resources"] == {"limits": {"memory": "256Mi"}, "requests": {}}
    [env] = container["env"]
    assert env["valueFrom"]["secretKeyRef"] == {"name": "openai", "key": "api-key"}
    assert pod["volumes"][0]["configMap"]["name"] == "brief-research-2-in"


def test_input_config_map_holds_the_task_input_and_no_key() -> None:
    config_map = children.input_config_map(action(), "uid-1")
    data = json.loads(config_map["data"]["input.json"])
    assert data["prompt"] == "p" and data["attempt"] == 2
    assert data["apiKeyEnv"] == "TROUPE_API_KEY"
    assert config_map["immutable"] is True


def job_body(conditions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "brief-research-1",
            "namespace": "team",
            "labels": {"troupe.dev/workflow": "brief", "troupe.dev/task": "research"}
            | {"troupe.dev/attempt": "1"},
        },
        "status": {"startTime": "2026-01-01T00:00:00Z", "conditions": conditions or []},
    }


def failed(reason: str) -> dict[str, Any]:
    return {"type": "Failed", "status": "True", "reason": reason, "message": "job says"}


def pod(message: str, exit_code: int) -> dict[str, Any]:
    terminated = {"exitCode": exit_code, "message": message}
    return {
        "metadata": {},
        "status": {"containerStatuses": [{"state": {"terminated": terminated}}]},
    }


def test_observed_jobs() -> None:
    running = observe.observed_job(job_body())
    assert running is not None and running.state is JobState.ACTIVE
    assert running.started_at == datetime(2026, 1, 1, tzinfo=UTC)
    done = observe.observed_job(job_body([{"type": "Complete", "status": "True"}]))
    assert done is not None and done.state is JobState.SUCCEEDED
    permanent = observe.observed_job(job_body([failed("PodFailurePolicy")]), [pod("401", 3)])
    assert permanent is not None and permanent.permanent and permanent.message == "401"
    late = observe.observed_job(job_body([failed("DeadlineExceeded")]))
    assert late is not None and late.deadline_exceeded and late.message == "job says"
    assert observe.observed_job({"metadata": {"name": "x", "labels": {}}}) is None


def test_task_output_needs_text_and_result() -> None:
    result = TaskResult(model="m").model_dump_json(by_alias=True)
    output = observe.task_output({"data": {"output": "text", "result.json": result}})
    assert output is not None and output.text == "text"
    assert observe.task_output({"data": {"output": "text"}}) is None
    assert observe.task_output({"data": {"output": "t", "result.json": "{"}}) is None


def test_index_lists_agents_once_then_follows_events() -> None:
    index = ClusterIndex()
    calls = []

    def load() -> list[dict[str, Any]]:
        calls.append(1)
        return [{"metadata": {"namespace": "team", "name": "r"}, "spec": {"role": "planner"}}]

    index.agent_changed({"metadata": {"namespace": "team", "name": "x"}, "spec": {}})
    assert set(index.agents("team", load)) == {"r", "x"}
    index.agent_changed({"metadata": {"namespace": "team", "name": "r"}}, deleted=True)
    assert set(index.agents("team", load)) == {"x"}
    assert len(calls) == 1
    assert index.job_changed(job_body()) == ("team", "brief")
    assert len(index.jobs(("team", "brief"))) == 1


async def test_triggers_coalesce_a_burst_into_few_reconciles() -> None:
    runs: list[int] = []

    def reconcile(key: tuple[str, str]) -> float | None:
        runs.append(1)
        time.sleep(0.05)
        return None

    triggers = Triggers(reconcile)
    await asyncio.gather(*(triggers.trigger(("ns", "wf")) for _ in range(10)))
    assert 1 <= len(runs) <= 2
    triggers.close()


def test_a_created_job_never_overwrites_a_newer_watch_event() -> None:
    index = ClusterIndex()
    complete = job_body([{"type": "Complete", "status": "True"}])
    index.job_changed(complete)
    index.job_created(job_body())
    [kept] = index.jobs(("team", "brief"))
    observed = observe.observed_job(kept)
    assert observed is not None and observed.state is JobState.SUCCEEDED
    index.job_created({**job_body(), "metadata": {**job_body()["metadata"], "name": "other"}})
    assert len(index.jobs(("team", "brief"))) == 2
