"""Runs that meet trouble end in a defined, documented state, and cost only themselves.

The real operator, Job runner, agent runtime and OpenAI stub, as in
test_workflow_controller.py; each test breaks one thing (a Job deleted under
a task, an upstream output gone, an Agent deleted, a hostile template) and
checks the state the run ends in, with its reason, and that the operator
keeps serving other Workflows meanwhile.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import kmock
import kubernetes
import pytest

from tests.integration.troupe_driver import Troupe, agent, reply_naming_the_task, workflow
from tests.support.emulator import EmulatedCluster
from tests.support.openai_stub import Fault, OpenAIStub
from tests.support.waiting import wait_for


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
    with troupe.operator(resync_seconds=120):  # only the Agent's own event can wake the run
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
        status = troupe.wait_for_phase("patient", "Succeeded", "Failed", timeout=60)
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


def test_a_missing_key_secret_ends_the_attempt_with_its_reason(
    troupe: Troupe, stub: OpenAIStub
) -> None:
    """Reproduced: the pod waited in CreateContainerConfigError and the task showed Running."""
    keyed = agent("worker", stub.base_url)
    keyed["spec"]["model"]["apiKeySecretRef"] = {"name": "no-such-secret", "key": "api-key"}
    troupe.apply(keyed, workflow("keyless", [{"name": "a", "retries": 2}]))
    with troupe.operator():
        status = troupe.wait_for_phase("keyless", "Succeeded", "Failed", timeout=60)
    task = status["tasks"]["a"]
    assert task["phase"] == "Failed" and task["attempts"] == 1
    assert "CreateContainerConfigError" in task["message"]
    assert "no-such-secret" in task["message"]
    assert not stub.chat_requests
    wait_for(lambda: not troupe.jobs("keyless"), timeout=20, what="the stuck Job deleted")


def test_a_job_the_cluster_refuses_fails_its_task_with_the_servers_words(
    troupe: Troupe, stub: OpenAIStub, emulator: EmulatedCluster
) -> None:
    """Reproduced: a refused create left the Workflow with no status and no Event."""
    quota = 'jobs "x" is forbidden: exceeded quota: team, used: count/jobs.batch=5, limited: 5'
    emulator.handler[kmock.method.POST, kmock.resource("batch/v1/jobs")] << kmock.KubernetesError(
        status=403, reason="Forbidden", message=quota, details={}
    )
    troupe.apply(agent("worker", stub.base_url), workflow("refused", [{"name": "a"}]))
    with troupe.operator():
        status = troupe.wait_for_phase("refused", "Succeeded", "Failed", timeout=60)
    assert "exceeded quota" in status["tasks"]["a"]["message"]
    failed = {c["type"]: c for c in status["conditions"]}["Failed"]
    assert failed["status"] == "True" and "exceeded quota" in failed["message"]
    assert {"TaskFailed", "WorkflowFailed"} <= set(troupe.event_reasons("refused"))


def test_a_spec_too_big_to_record_is_an_invalid_spec_that_names_the_limit(
    troupe: Troupe, stub: OpenAIStub
) -> None:
    prompt = "TASK=x " + "y" * 65_000
    tasks = [{"name": f"t{i}", "prompt": prompt} for i in range(17)]
    troupe.apply(agent("worker", stub.base_url), workflow("huge", tasks))
    with troupe.operator():
        status = troupe.wait_for_phase("huge", "Succeeded", "Failed", "Error", timeout=60)
    assert status["phase"] == "Error" and "MAX_SPEC_BYTES" in status["message"]
    assert not troupe.jobs("huge") and not stub.chat_requests


def test_a_fan_in_of_large_outputs_sends_each_output_to_the_model_once(
    troupe: Troupe,
) -> None:
    """Reproduced: outputs were sent twice and copied into a 1.2 MB input the API refused."""
    big = 300_000

    def reply(body: dict[str, object]) -> str:
        return "TASK=merge done" if "TASK=merge" in json.dumps(body) else "o" * big

    tasks = [
        {"name": "a"},
        {"name": "b"},
        {"name": "c"},
        {
            "name": "merge",
            "dependsOn": ["a", "b", "c"],
            "prompt": "TASK=merge {{ tasks.a.output }} {{ tasks.b.output }} {{ tasks.c.output }}",
        },
    ]
    with OpenAIStub(reply=reply) as stub:
        troupe.apply(agent("worker", stub.base_url), workflow("fan-in", tasks))
        with troupe.operator():
            status = troupe.wait_for_phase("fan-in", "Succeeded", "Failed", timeout=120)
        merge = next(r for r in stub.chat_requests if "TASK=merge" in json.dumps(r.body))
    assert status["phase"] == "Succeeded", status.get("message")
    sent = json.dumps(merge.body)
    assert 3 * big <= len(sent) < 3 * big + 20_000, "an upstream output was sent twice"


PROBE = textwrap.dedent(
    """
    import json, sys
    from kubernetes import client, config
    config.load_kube_config()
    core = client.CoreV1Api()
    own, other = sys.argv[1], sys.argv[2]
    body = {"metadata": {"name": other}, "data": {"output": "forged"}}
    attempts = {
        "read own output": lambda: core.read_namespaced_config_map(own, "default"),
        "read a Secret": lambda: core.read_namespaced_secret("llm-key", "default"),
        "list Secrets": lambda: core.list_namespaced_secret("default"),
        "list ConfigMaps": lambda: core.list_namespaced_config_map("default"),
        "read other run's output": lambda: core.read_namespaced_config_map(other, "default"),
        "replace other run's output": lambda: core.replace_namespaced_config_map(
            other, "default", body),
        "patch other run's output": lambda: core.patch_namespaced_config_map(
            other, "default", body),
        "delete other run's output": lambda: core.delete_namespaced_config_map(other, "default"),
        "create over other run's output": lambda: core.create_namespaced_config_map(
            "default", body),
    }
    answers = {}
    for what, attempt in attempts.items():
        try:
            attempt()
            answers[what] = 200
        except client.ApiException as error:
            answers[what] = error.status
    print(json.dumps(answers))
    """
)


def test_a_task_pod_touches_only_its_own_runs_outputs(
    troupe: Troupe, stub: OpenAIStub, emulator: EmulatedCluster, tmp_path: pathlib.Path
) -> None:
    emulator.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "llm-key", "namespace": "default"},
            "stringData": {"api-key": "sk-never-readable"},
        }
    )
    troupe.apply(
        agent("worker", stub.base_url),
        workflow("mine", [{"name": "a"}]),
        workflow("theirs", [{"name": "a"}]),
    )
    with troupe.operator():
        for name in ("mine", "theirs"):
            troupe.wait_for_phase(name, "Succeeded", timeout=60)
    mine, theirs = troupe.run("mine"), troupe.run("theirs")
    token = emulator.token_for("default", mine.task_identity())
    kubeconfig = emulator.write_kubeconfig(tmp_path / "task-identity", token=token)
    probe = subprocess.run(
        [sys.executable, "-c", PROBE, mine.output_config_map("a"), theirs.output_config_map("a")],
        env={"KUBECONFIG": str(kubeconfig), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    answers = json.loads(probe.stdout)
    assert answers.pop("read own output") == 200
    assert answers.pop("create over other run's output") == 409, "must not overwrite"
    assert answers == dict.fromkeys(answers, 403), answers
    assert troupe.config_maps("theirs")[theirs.output_config_map("a")]["output"] != "forged"
