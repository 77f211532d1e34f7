"""Task mode writes its output ConfigMap through the Kubernetes API (the harness's emulator),
as a real subprocess with KUBECONFIG, and a retried attempt replaces what the last one left."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes

from troupe_agent.scripted import PLACEHOLDER_BANNER
from troupe_operator.api import OUTPUT_KEY, RESULT_KEY, TaskResult

TROUPE_AGENT = Path(sys.executable).parent / "troupe-agent"
OWNER = {
    "apiVersion": "troupe.dev/v1alpha1",
    "kind": "Workflow",
    "name": "wf",
    "uid": "0b9c6a8e-0000-4000-8000-000000000001",
    "controller": True,
    "blockOwnerDeletion": True,
}


def run_task(tmp_path: Path, kubeconfig: Path, attempt: int) -> subprocess.CompletedProcess[str]:
    task_input: dict[str, Any] = {
        "workflow": "wf",
        "namespace": "default",
        "task": "plan",
        "attempt": attempt,
        "agentName": "planner",
        "agent": {"role": "planner"},
        "prompt": f"Plan attempt {attempt}",
        "output": {
            "configMap": "wf-plan-output",
            "namespace": "default",
            "labels": {"troupe.dev/workflow": "wf", "troupe.dev/task": "plan"},
            "ownerReferences": [OWNER],
        },
    }
    input_path = tmp_path / f"input-{attempt}.json"
    input_path.write_text(json.dumps(task_input))
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    return subprocess.run(
        [TROUPE_AGENT, "task", "--input", input_path, "--termination-log", tmp_path / "term"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_task_creates_then_replaces_its_output_config_map(
    tmp_path: Path, kubeconfig: Path, kube_api: kubernetes.client.ApiClient
) -> None:
    core = kubernetes.client.CoreV1Api(kube_api)
    for attempt in (1, 2):
        finished = run_task(tmp_path, kubeconfig, attempt)
        assert finished.returncode == 0, finished.stderr

        config_map = core.read_namespaced_config_map("wf-plan-output", "default")
        text = config_map.data[OUTPUT_KEY]
        assert text.startswith(PLACEHOLDER_BANNER)
        assert f"Plan attempt {attempt}" in text
        result = TaskResult.model_validate(json.loads(config_map.data[RESULT_KEY]))
        assert result.scripted and result.bytes == len(text.encode())
        assert config_map.metadata.labels["troupe.dev/task"] == "plan"
        [owner] = config_map.metadata.owner_references
        assert (owner.kind, owner.name, owner.uid, owner.controller) == (
            "Workflow",
            "wf",
            OWNER["uid"],
            True,
        )


def test_unreachable_api_is_a_retryable_failure(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:9"}}],
                "users": [{"name": "u", "user": {}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    finished = run_task(tmp_path, kubeconfig, 1)
    assert finished.returncode == 1, finished.stderr
    message = (tmp_path / "term").read_text()
    assert message.startswith("cannot write output ConfigMap default/wf-plan-output")
    assert message.count("\n") == 1
