"""Task mode against the Kubernetes API emulator, as a real subprocess configured like a pod:
its TaskInput in TROUPE_TASK_INPUT, the run's spec as a file, KUBECONFIG for credentials.

It reads each upstream output ConfigMap once, writes (then, on a later attempt, replaces) its
own, and survives the API's bad moments: the emulator answers chosen requests of the task
(User-Agent ``troupe-agent``) with 5xx, 429 + Retry-After or 403.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import kmock
import kubernetes
import pytest

from tests.support.emulator import EmulatedCluster
from tests.support.kube.faults import Target
from troupe_agent.scripted import PLACEHOLDER_BANNER
from troupe_operator.api import (
    EXIT_PERMANENT,
    EXIT_RETRYABLE,
    INPUT_ENV,
    OUTPUT_KEY,
    RESULT_KEY,
    TaskReport,
    TaskResult,
)

TROUPE_AGENT = Path(sys.executable).parent / "troupe-agent"
OWNER = {
    "apiVersion": "troupe.dev/v1alpha1",
    "kind": "Workflow",
    "name": "wf",
    "uid": "0b9c6a8e-0000-4000-8000-000000000001",
    "controller": True,
    "blockOwnerDeletion": True,  # asked for, and still never set: the pod may not set it
}
SPEC = {
    "inputs": {"topic": "tides"},
    "tasks": [
        {"name": "research", "agent": "a", "prompt": "Research {{ inputs.topic }}"},
        {"name": "outline", "agent": "a", "prompt": "Outline"},
        {
            "name": "plan",
            "agent": "a",
            "prompt": "Plan {{ inputs.topic }} from: {{ tasks.research.output }}",
            "dependsOn": ["research", "outline"],
        },
    ],
}
UPSTREAM = {"research": "wf-research-output", "outline": "wf-outline-output"}
OUTPUT_CONFIG_MAP = "wf-plan-output"


def kubeconfig_for(server: str, path: Path) -> Path:
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    return path


def upstream_outputs(emulator: EmulatedCluster, **outputs: str) -> None:
    for task, text in outputs.items():
        data = {OUTPUT_KEY: text, RESULT_KEY: json.dumps({"model": "m"})}
        metadata = {"name": UPSTREAM[task], "namespace": "default"}
        emulator.create(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}
        )


def run_task(
    tmp_path: Path, kubeconfig: Path, attempt: int = 1, **fields: Any
) -> tuple[subprocess.CompletedProcess[str], TaskReport]:
    task_input = {
        "workflow": "wf",
        "namespace": "default",
        "task": "plan",
        "attempt": attempt,
        "agentName": "planner",
        "agent": {"role": "planner"},
        "upstream": UPSTREAM,
        "output": {
            "configMap": OUTPUT_CONFIG_MAP,
            "namespace": "default",
            "labels": {"troupe.dev/workflow": "wf", "troupe.dev/task": "plan"},
            "ownerReferences": [OWNER],
        },
        **fields,
    }
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(SPEC))
    termination_log = tmp_path / f"termination-log-{attempt}"
    env = {**os.environ, INPUT_ENV: json.dumps(task_input), "KUBECONFIG": str(kubeconfig)}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    finished = subprocess.run(
        [TROUPE_AGENT, "task", "--spec", spec_file, "--termination-log", termination_log],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    report = TaskReport.decode(termination_log.read_text())
    assert report is not None, finished.stderr
    return finished, report


def test_a_task_reads_its_upstream_and_creates_then_replaces_its_output(
    tmp_path: Path,
    emulator: EmulatedCluster,
    kubeconfig: Path,
    kube_api: kubernetes.client.ApiClient,
) -> None:
    upstream_outputs(emulator, research="the moon pulls", outline="1. intro")
    core = kubernetes.client.CoreV1Api(kube_api)
    for attempt in (1, 2):
        finished, report = run_task(tmp_path, kubeconfig, attempt)
        assert finished.returncode == 0, finished.stderr
        config_map = core.read_namespaced_config_map(OUTPUT_CONFIG_MAP, "default")
        data, metadata = config_map.data or {}, config_map.metadata
        assert metadata is not None and metadata.labels is not None
        text = data[OUTPUT_KEY]
        assert text.startswith(PLACEHOLDER_BANNER)
        assert "Plan tides from: the moon pulls" in text
        result = TaskResult.model_validate(json.loads(data[RESULT_KEY]))
        assert report.succeeded and report.result == result and report.preview
        assert metadata.annotations == {
            "troupe.dev/report": report.encode(),
            "troupe.dev/attempt": str(attempt),
        }
        assert metadata.labels["troupe.dev/task"] == "plan"
        [owner] = metadata.owner_references or []
        assert (owner.kind, owner.name, owner.uid, owner.controller) == (
            "Workflow",
            "wf",
            OWNER["uid"],
            True,
        )
        assert owner.block_owner_deletion is None


def test_a_deleted_upstream_output_is_a_permanent_failure_naming_it(
    tmp_path: Path, emulator: EmulatedCluster, kubeconfig: Path
) -> None:
    upstream_outputs(emulator, research="the moon pulls")
    finished, report = run_task(tmp_path, kubeconfig)
    assert finished.returncode == EXIT_PERMANENT
    assert report.message == (
        "the output of upstream task 'outline' (ConfigMap wf-outline-output) is gone"
    )


READS = Target("troupe-agent", verbs={"get"}, resource="configmaps")
WRITES = Target("troupe-agent", verbs={"create"}, resource="configmaps")


def test_passing_api_faults_are_retried_and_each_output_is_read_once(
    tmp_path: Path, emulator: EmulatedCluster, kubeconfig: Path
) -> None:
    upstream_outputs(emulator, research="the moon pulls", outline="1. intro")
    emulator.faults.fail(READS, 503, count=1)
    emulator.faults.fail(READS, 429, retry_after=1, count=1)
    for status in (500, 429, 504):
        emulator.faults.fail(WRITES, status, retry_after=0 if status == 429 else None, count=1)
    finished, report = run_task(tmp_path, kubeconfig)
    assert finished.returncode == 0, finished.stderr
    assert report.succeeded
    assert emulator.faults.injected["fail"] == 5
    reads = emulator.handler[kmock.method.GET, kmock.resource("v1/configmaps")]
    assert len(reads) == len(UPSTREAM) + 2, "an output was read more than once"
    written = [cm["metadata"]["name"] for cm in emulator.objects("v1", "configmaps")]
    assert OUTPUT_CONFIG_MAP in written


def test_a_forbidden_read_is_permanent_with_the_api_message(
    tmp_path: Path, emulator: EmulatedCluster, kubeconfig: Path
) -> None:
    emulator.faults.fail(READS, 403, count=1)
    finished, report = run_task(tmp_path, kubeconfig)
    assert finished.returncode == EXIT_PERMANENT
    assert report.message is not None and "HTTP 403" in report.message
    assert report.message.endswith("injected HTTP 403")


@pytest.mark.parametrize(
    ("task", "upstream"), [("plan", UPSTREAM), ("outline", {})], ids=["reading", "writing"]
)
def test_an_unreachable_api_is_retried_until_the_deadline_then_retryable(
    tmp_path: Path, task: str, upstream: dict[str, str]
) -> None:
    kubeconfig = kubeconfig_for("http://127.0.0.1:9", tmp_path / "kubeconfig")
    started = time.monotonic()
    # long enough for the task process to start and call the model on a loaded machine
    fields: dict[str, Any] = {"task": task, "upstream": upstream, "deadlineSeconds": 6}
    finished, report = run_task(tmp_path, kubeconfig, **fields)
    assert finished.returncode == EXIT_RETRYABLE, finished.stderr
    assert time.monotonic() - started < 30
    assert report.message is not None and "cannot reach the Kubernetes API" in report.message
    assert "gave up after" in report.message
    assert (report.result is not None) == (task == "outline")  # the model was paid: say so
