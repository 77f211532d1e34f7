"""The Helm chart on a real cluster: ``helm install`` on kind, every example run to its end.

Builds both images with ``docker build`` (FROM the real python:3.11-slim-bookworm), loads
them into a fresh kind cluster and installs ``charts/troupe`` with the real ``helm
install`` (two operator replicas on the Lease, the chart's least-privilege ClusterRole,
under the real API server's checks). The OpenAI-compatible stub of
``tests/support/openai_stub.py`` runs in the cluster as a Deployment of the agent image
(``team_reply``: text for tasks, a delegation then a finish for a supervisor). Then the
README's flow: the Tenant of ``examples/tenant.yaml`` (its egress also open to the stub's
port), and in its namespace every example with its Agents pointed at the stub. The leading
operator pod is killed (force-deleted) once the first task of the serial pipeline has
succeeded; the standby takes the Lease and every Workflow Succeeds with the stub's outputs;
the team of ``examples/team.yaml`` answers ``/v1/invoke`` through a port-forward, having
delegated to a member; no operator log line says "forbidden". Last, ``helm test`` passes
and ``helm uninstall`` leaves no object of the release behind.

Needs Docker and kind (see conftest.py); ``make e2e`` runs it. It has not been run on the
machines this project is developed on, which have neither.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import yaml

from tests.support.helm import CHART, ROOT, find_tool
from tests.support.loopback import free_port
from tests.support.waiting import wait_for

RELEASE, SYSTEM = "troupe", "troupe-system"
IMAGES = {"Dockerfile.operator": "troupe-operator:e2e", "Dockerfile.agent": "troupe-agent:e2e"}
OPERATOR_PODS = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=operator"
LEASE = "troupe-operator"
HELM_HOMES = ("config", "cache", "data")
TENANT, TEAM_NAMESPACE = "research-team", "research-dev"
STUB_NAMESPACE, STUB_PORT = "troupe-e2e-stub", 8000
STUB_URL = f"http://openai-stub.{STUB_NAMESPACE}.svc:{STUB_PORT}/v1"
EXAMPLES = {
    "serial-pipeline.yaml": "launch-brief",
    "fan-out-fan-in.yaml": "vendor-assessment",
    "hybrid-report.yaml": "quarterly-report",
    "openai-endpoint.yaml": None,  # an Agent and its key's Secret: the Workflow below uses it
    "team.yaml": None,  # a served team: invoked below
}
ENDPOINT_WORKFLOW = {
    "apiVersion": "troupe.dev/v1alpha1",
    "kind": "Workflow",
    "metadata": {"name": "endpoint-check"},
    "spec": {"tasks": [{"name": "ask", "agent": "gpt-researcher", "prompt": "Say hello."}]},
}
WORKFLOWS = [name for name in EXAMPLES.values() if name] + ["endpoint-check"]
TEAM_AGENTS = ("launch-team", "market-scout", "briefer")

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(3600)]


def run(
    *args: str, timeout: float = 600, stdin: str | None = None, env: dict[str, str] | None = None
) -> str:
    result = subprocess.run(
        args, cwd=ROOT, capture_output=True, text=True, timeout=timeout, input=stdin, env=env
    )
    assert result.returncode == 0, f"{' '.join(args)} failed: {result.stderr[-2000:]}"
    return result.stdout


def tool(name: str) -> str:
    found = find_tool(name)  # the venv's (`make tools`), else the PATH's
    assert found is not None, f"{name} is missing (conftest.py skips without it)"
    return str(found)


@dataclass
class Kind:
    kubeconfig: pathlib.Path
    helm_home: pathlib.Path

    def kubectl_command(self, *args: str) -> list[str]:
        return [tool("kubectl"), "--kubeconfig", str(self.kubeconfig), *args]

    def kubectl(self, *args: str, stdin: str | None = None, timeout: float = 600) -> str:
        return run(*self.kubectl_command(*args), stdin=stdin, timeout=timeout)

    def helm(self, *args: str, timeout: float = 900) -> str:
        """The real ``helm``, with its config, cache and data in a directory of the test's."""
        homes = {f"HELM_{part.upper()}_HOME": str(self.helm_home / part) for part in HELM_HOMES}
        env = {**os.environ, **homes, "KUBECONFIG": str(self.kubeconfig)}
        return run(tool("helm"), *args, timeout=timeout, env=env)

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json"))

    def leader(self) -> str | None:
        """The operator pod whose identity (``<POD_NAME>_<suffix>``) holds the Lease."""
        holder = self.kubectl(
            "get", "lease", LEASE, "-n", SYSTEM, "--ignore-not-found",
            "-o", "jsonpath={.spec.holderIdentity}",
        )  # fmt: skip
        leaders = [pod for pod in self.operator_pods() if holder.startswith(f"{pod}_")]
        assert len(leaders) <= 1, (holder, leaders)
        return leaders[0] if leaders else None

    def operator_pods(self) -> list[str]:
        pods = self.get("pods", "-n", SYSTEM, "-l", OPERATOR_PODS)["items"]
        return [p["metadata"]["name"] for p in pods if not p["metadata"].get("deletionTimestamp")]

    def workflow_status(self, name: str) -> dict[str, Any]:
        status: dict[str, Any] = self.get("workflow", name, "-n", TEAM_NAMESPACE).get("status")
        return status or {}

    def task_phases(self, workflow: str) -> list[str]:
        tasks = self.workflow_status(workflow).get("tasks") or {}
        return [task.get("phase", "") for task in tasks.values()]

    def ended(self, workflow: str) -> dict[str, Any] | None:
        status = self.workflow_status(workflow)
        return status if status.get("phase") in ("Succeeded", "Failed") else None

    def operator_logs(self) -> str:
        return self.kubectl("logs", "-n", SYSTEM, "-l", OPERATOR_PODS, "--tail=-1", "--prefix")


@pytest.fixture(scope="module")
def kind(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kind]:
    """A fresh kind cluster with both images loaded and the chart installed (``--wait``)."""
    name = f"troupe-e2e-{uuid.uuid4().hex[:6]}"
    directory = tmp_path_factory.mktemp("kind")
    cluster = Kind(directory / "kubeconfig", directory / "helm")
    for dockerfile, image in IMAGES.items():
        run("docker", "build", "-f", dockerfile, "-t", image, ".", timeout=1800)
    kubeconfig = str(cluster.kubeconfig)
    run("kind", "create", "cluster", "--name", name, "--kubeconfig", kubeconfig, "--wait", "180s")
    try:
        run("kind", "load", "docker-image", *IMAGES.values(), "--name", name)
        cluster.helm(
            "install", RELEASE, str(CHART), "--namespace", SYSTEM, "--create-namespace",
            "--set", "image.repository=troupe-operator,image.tag=e2e",
            "--set", "agentImage.repository=troupe-agent,agentImage.tag=e2e",
            "--wait", "--timeout", "10m",
        )  # fmt: skip
        yield cluster
    finally:
        run("kind", "delete", "cluster", "--name", name)


# --- what the test applies ------------------------------------------------------------------


def stub_manifests() -> str:
    """The stub's namespace, its code (a ConfigMap) and a Deployment and Service running it."""
    files = {
        "tests/__init__.py": ROOT / "tests" / "__init__.py",
        "tests/support/__init__.py": ROOT / "tests" / "support" / "__init__.py",
        "tests/support/loopback.py": ROOT / "tests" / "support" / "loopback.py",
        "tests/support/openai_stub.py": ROOT / "tests" / "support" / "openai_stub.py",
    }
    keys = {path: path.replace("/", "-") for path in files}
    labels = {"app.kubernetes.io/name": "openai-stub"}
    namespaced = {"namespace": STUB_NAMESPACE}
    documents: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": STUB_NAMESPACE}},
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "openai-stub", **namespaced},
            "data": {keys[path]: source.read_text() for path, source in files.items()},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "openai-stub", **namespaced},
            "spec": {
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [
                            {
                                "name": "stub",
                                "image": IMAGES["Dockerfile.agent"],
                                "command": [
                                    "python",
                                    "-m",
                                    "tests.support.openai_stub",
                                    str(STUB_PORT),
                                ],
                                "workingDir": "/stub",
                                "ports": [{"name": "http", "containerPort": STUB_PORT}],
                                "readinessProbe": {
                                    "httpGet": {"path": "/v1/models", "port": "http"}
                                },
                                "volumeMounts": [{"name": "code", "mountPath": "/stub"}],
                            }
                        ],
                        "volumes": [
                            {
                                "name": "code",
                                "configMap": {
                                    "name": "openai-stub",
                                    "items": [{"key": keys[p], "path": p} for p in files],
                                },
                            }
                        ],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "openai-stub", **namespaced},
            "spec": {
                "selector": labels,
                "ports": [{"name": "http", "port": STUB_PORT, "targetPort": "http"}],
            },
        },
    ]
    return yaml.safe_dump_all(documents)


def tenant() -> str:
    """``examples/tenant.yaml``, its model egress also open to the stub's port."""
    [document] = [
        d for d in yaml.safe_load_all((ROOT / "examples" / "tenant.yaml").read_text()) if d
    ]
    document["spec"]["networkIsolation"]["modelEgressPorts"].append(STUB_PORT)
    return yaml.safe_dump(document)


def on_the_stub(example: str) -> str:
    """The example's documents, each Agent's model the stub (its other model settings kept)."""
    documents = [d for d in yaml.safe_load_all((ROOT / "examples" / example).read_text()) if d]
    for document in documents:
        if document["kind"] == "Agent":
            model = document["spec"].setdefault("model", {})
            model.update(name="stub-model", baseURL=STUB_URL)
    return yaml.safe_dump_all(documents)


# --- the test ---------------------------------------------------------------------------------


def invoke_team(kind: Kind) -> dict[str, Any]:
    """``examples/team.yaml``'s way in: a ServiceAccount's token, ``/v1/invoke``, port-forwarded."""
    namespace = ("-n", TEAM_NAMESPACE)
    kind.kubectl(*namespace, "create", "serviceaccount", "caller")
    kind.kubectl(
        *namespace,
        "create",
        "rolebinding",
        "caller",
        "--role=team-caller",
        f"--serviceaccount={TEAM_NAMESPACE}:caller",
    )
    token = kind.kubectl(
        *namespace, "create", "token", "caller", "--audience", "troupe.dev/agent"
    ).strip()
    port = free_port()
    command = kind.kubectl_command(
        *namespace, "port-forward", "service/launch-team", f"{port}:8080"
    )
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as forward:
        try:
            assert forward.stdout is not None
            assert "Forwarding from" in forward.stdout.readline()  # it listens
            reply = httpx.post(
                f"http://127.0.0.1:{port}/v1/invoke",
                headers={"Authorization": f"Bearer {token}"},
                json={"prompt": "Brief me on our launch risks", "conversationId": "e2e-1"},
                timeout=300,
            )
        finally:
            forward.terminate()
    assert reply.status_code == 200, reply.text
    answer: dict[str, Any] = reply.json()
    return answer


def test_the_chart_runs_every_example_on_kind_and_outlives_its_leader(kind: Kind) -> None:
    pods = wait_for(
        lambda: len(p := kind.operator_pods()) == 2 and p,
        timeout=300,
        interval=2,
        what="two operator pods",
    )
    leader = wait_for(
        kind.leader, timeout=120, interval=2, what="an operator pod to hold the Lease"
    )
    assert leader in pods

    kind.kubectl("apply", "-f", "-", stdin=stub_manifests())
    kind.kubectl(
        "rollout", "status", "-n", STUB_NAMESPACE, "deployment/openai-stub", "--timeout=300s"
    )
    kind.kubectl("apply", "-f", "-", stdin=tenant())
    kind.kubectl("wait", "--for=condition=Ready", f"tenant/{TENANT}", "--timeout=300s")
    for example in EXAMPLES:
        kind.kubectl("apply", "-n", TEAM_NAMESPACE, "-f", "-", stdin=on_the_stub(example))
    kind.kubectl("apply", "-n", TEAM_NAMESPACE, "-f", "-", stdin=yaml.safe_dump(ENDPOINT_WORKFLOW))

    # The leader dies (no grace) once the serial pipeline's first task has succeeded.
    wait_for(
        lambda: "Succeeded" in kind.task_phases("launch-brief"),
        timeout=600, interval=2, what="the first task of launch-brief to succeed",
    )  # fmt: skip
    assert kind.workflow_status("launch-brief")["phase"] == "Running"
    kind.kubectl("delete", "pod", leader, "-n", SYSTEM, "--grace-period=0", "--force")
    successor = wait_for(
        lambda: (new := kind.leader()) not in (None, leader) and new,
        timeout=180, interval=2, what="another operator pod to take the Lease",
    )  # fmt: skip
    assert successor != leader

    for name in WORKFLOWS:
        status = wait_for(
            lambda name=name: kind.ended(name), timeout=900, interval=3, what=f"{name} to end"
        )
        assert status["phase"] == "Succeeded", (name, status, kind.operator_logs()[-4000:])
        for task, task_status in status["tasks"].items():
            assert task_status["preview"].startswith("stub reply to: "), (name, task, task_status)
            assert task_status["usage"]["totalTokens"] > 0

    kind.kubectl(
        "wait",
        "-n",
        TEAM_NAMESPACE,
        "--for=condition=Ready",
        *(f"agent/{a}" for a in TEAM_AGENTS),
        "--timeout=600s",
    )
    answer = invoke_team(kind)
    assert "stub answer after:" in json.dumps(answer), answer
    logs = kind.operator_logs()
    assert "forbidden" not in logs.lower(), logs[-4000:]

    kind.helm("test", RELEASE, "--namespace", SYSTEM, "--timeout", "5m")

    # Uninstall: the examples' objects first (the operator removes its finalizers), then Helm's.
    kind.kubectl("delete", "-n", TEAM_NAMESPACE, "workflows,agents", "--all", "--timeout=300s")
    kind.kubectl("delete", "tenant", TENANT, "--timeout=300s")
    kind.helm("uninstall", RELEASE, "--namespace", SYSTEM, "--wait", "--timeout", "5m")
    kinds = (
        "deployments,replicasets,pods,services,serviceaccounts,configmaps,secrets,"
        "poddisruptionbudgets,roles,rolebindings,clusterroles,clusterrolebindings"
    )
    selector = f"app.kubernetes.io/instance={RELEASE}"
    wait_for(
        lambda: kind.kubectl("get", kinds, "-A", "-l", selector, "-o", "name").strip() == "",
        timeout=300, interval=3, what=f"every object of the release {RELEASE} to go",
    )  # fmt: skip
    assert kind.helm("list", "--namespace", SYSTEM, "--short").strip() == ""
