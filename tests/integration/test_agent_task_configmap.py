"""Task mode against the Kubernetes API emulator, as a real subprocess configured like a pod:
its TaskInput in TROUPE_TASK_INPUT, the run's spec as a file, KUBECONFIG for credentials.

It reads each upstream output ConfigMap once, writes (then, on a later attempt, replaces) its
own, and survives the API's bad moments: a fault-injecting proxy in front of the emulator
answers chosen requests with 5xx, 429 + Retry-After or 403 before passing the rest on.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import aiohttp.web
import kubernetes
import pytest

from tests.support.emulator import EmulatedCluster
from tests.support.loopback import BackgroundService
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


class FaultyApi(BackgroundService):
    """A proxy to the emulator that answers queued faults first, per HTTP method."""

    def __init__(self, target: str) -> None:
        super().__init__("faulty-kube-api")
        self.target = target
        self.faults: dict[str, collections.deque[tuple[int, dict[str, str]]]] = (
            collections.defaultdict(collections.deque)
        )
        self.passed: list[tuple[str, str, int]] = []
        self.url = ""

    def inject(self, method: str, status: int, **headers: str) -> None:
        self.faults[method].append((status, headers))

    async def _start(self) -> None:
        self._session = aiohttp.ClientSession()
        server = aiohttp.web.Server(self._handle)
        self._runner = aiohttp.web.ServerRunner(server)
        await self._runner.setup()
        site = aiohttp.web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def _stop(self) -> None:
        await self._session.close()
        await self._runner.cleanup()

    async def _handle(self, request: aiohttp.web.BaseRequest) -> aiohttp.web.Response:
        if self.faults[request.method]:
            status, headers = self.faults[request.method].popleft()
            body = {"kind": "Status", "status": "Failure", "code": status, "message": f"{status}!"}
            return aiohttp.web.json_response(body, status=status, headers=headers)
        async with self._session.request(
            request.method,
            self.target + request.path_qs,
            data=await request.read(),
            headers={"Content-Type": request.headers.get("Content-Type", "application/json")},
        ) as answer:
            self.passed.append((request.method, request.path, answer.status))
            return aiohttp.web.Response(
                body=await answer.read(), status=answer.status, content_type="application/json"
            )


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


def test_passing_api_faults_are_retried_and_each_output_is_read_once(
    tmp_path: Path, emulator: EmulatedCluster
) -> None:
    upstream_outputs(emulator, research="the moon pulls", outline="1. intro")
    with FaultyApi(emulator.url) as api:
        api.inject("GET", 503)
        api.inject("GET", 429, **{"Retry-After": "1"})
        api.inject("POST", 500)
        api.inject("POST", 429, **{"Retry-After": "0"})
        api.inject("POST", 504)
        finished, report = run_task(tmp_path, kubeconfig_for(api.url, tmp_path / "kubeconfig"))
        assert finished.returncode == 0, finished.stderr
        assert report.succeeded
        reads = collections.Counter(path for method, path, _ in api.passed if method == "GET")
        assert sorted(reads.values()) == [1, 1] and len(reads) == len(UPSTREAM)
        assert ("POST", "/api/v1/namespaces/default/configmaps", 201) in api.passed


def test_a_forbidden_read_is_permanent_with_the_api_message(
    tmp_path: Path, emulator: EmulatedCluster
) -> None:
    with FaultyApi(emulator.url) as api:
        api.inject("GET", 403)
        finished, report = run_task(tmp_path, kubeconfig_for(api.url, tmp_path / "kubeconfig"))
    assert finished.returncode == EXIT_PERMANENT
    assert report.message is not None and "HTTP 403" in report.message
    assert report.message.endswith(": 403!")


@pytest.mark.parametrize(
    ("task", "upstream"), [("plan", UPSTREAM), ("outline", {})], ids=["reading", "writing"]
)
def test_an_unreachable_api_is_retried_until_the_deadline_then_retryable(
    tmp_path: Path, task: str, upstream: dict[str, str]
) -> None:
    kubeconfig = kubeconfig_for("http://127.0.0.1:9", tmp_path / "kubeconfig")
    started = time.monotonic()
    fields: dict[str, Any] = {"task": task, "upstream": upstream, "deadlineSeconds": 2}
    finished, report = run_task(tmp_path, kubeconfig, **fields)
    assert finished.returncode == EXIT_RETRYABLE, finished.stderr
    assert time.monotonic() - started < 30
    assert report.message is not None and "cannot reach the Kubernetes API" in report.message
    assert "gave up after" in report.message
    assert (report.result is not None) == (task == "outline")  # the model was paid: say so
