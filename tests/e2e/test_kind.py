"""The operator as installed by ``deploy/operator.yaml`` on a real kind cluster.

Builds both images, loads them into a fresh kind cluster, applies the CRDs and
``deploy/operator.yaml`` (two operator replicas in ``troupe-system`` under the
least-privilege ClusterRole, with the real API server's escalation checks), and
waits for the Deployment to be available. Exactly one replica holds the Lease
``troupe-system/troupe-operator``; the serial example runs to Succeeded. Then
the leader's pod is deleted: another replica takes the Lease and a second run
of the same Workflow, under another name, succeeds too. No operator log line
says "forbidden". Needs Docker and kind (see conftest.py); ``make e2e`` runs it.
"""

from __future__ import annotations

import pathlib
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
AGENT_IMAGE = "troupe-agent:e2e"
OPERATOR_IMAGE = "troupe-operator:e2e"
"""The images deploy/operator.yaml names (the operator's, and TROUPE_AGENT_IMAGE)."""
SYSTEM = "troupe-system"
LEASE = "troupe-operator"
OPERATOR_PODS = "app.kubernetes.io/name=troupe-operator"
EXAMPLE = ROOT / "examples" / "serial-pipeline.yaml"

pytestmark = pytest.mark.e2e
T = TypeVar("T")


def run(*args: str, timeout: float = 600, stdin: str | None = None) -> str:
    result = subprocess.run(
        args, cwd=ROOT, capture_output=True, text=True, timeout=timeout, input=stdin, check=False
    )
    assert result.returncode == 0, f"{' '.join(args)} failed: {result.stderr[-2000:]}"
    return result.stdout


def eventually(probe: Callable[[], T | None], what: str, timeout: float = 600) -> T:
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(2)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pathlib.Path]:
    name = f"troupe-e2e-{uuid.uuid4().hex[:6]}"
    kubeconfig = tmp_path_factory.mktemp("kind") / "kubeconfig"
    run("docker", "build", "-f", "Dockerfile.agent", "-t", AGENT_IMAGE, ".", timeout=1200)
    run("docker", "build", "-f", "Dockerfile.operator", "-t", OPERATOR_IMAGE, ".", timeout=1200)
    run("kind", "create", "cluster", "--name", name, "--kubeconfig", str(kubeconfig))
    try:
        run("kind", "load", "docker-image", AGENT_IMAGE, OPERATOR_IMAGE, "--name", name)
        kubectl = ("kubectl", "--kubeconfig", str(kubeconfig))
        run(*kubectl, "apply", "-f", "crds/")
        run(*kubectl, "wait", "--for=condition=Established", "crd", "--all", "--timeout=120s")
        run(*kubectl, "apply", "-f", "deploy/operator.yaml")
        # The tests use namespaces no Tenant owns: a single-team cluster's setting.
        run(
            *kubectl,
            "-n",
            SYSTEM,
            "set",
            "env",
            "deployment/troupe-operator",
            "TROUPE_UNTENANTED_NAMESPACES=Allow",
        )
        run(
            *kubectl,
            "-n",
            SYSTEM,
            "rollout",
            "status",
            "deployment/troupe-operator",
            "--timeout=300s",
        )
        run(
            *kubectl,
            "-n",
            SYSTEM,
            "wait",
            "--for=condition=Available",
            "deployment/troupe-operator",
            "--timeout=300s",
        )
        yield kubeconfig
    finally:
        run("kind", "delete", "cluster", "--name", name)


class Cluster:
    def __init__(self, kubeconfig: pathlib.Path) -> None:
        self.kubectl = ("kubectl", "--kubeconfig", str(kubeconfig))

    def __call__(self, *args: str, stdin: str | None = None) -> str:
        return run(*self.kubectl, *args, stdin=stdin)

    def holder(self) -> str:
        return self(
            "get",
            "lease",
            LEASE,
            "-n",
            SYSTEM,
            "--ignore-not-found",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ).strip()

    def operator_pods(self) -> list[str]:
        names = self(
            "get",
            "pods",
            "-n",
            SYSTEM,
            "-l",
            OPERATOR_PODS,
            "-o",
            "jsonpath={.items[*].metadata.name}",
        )
        return names.split()

    def leader(self) -> str | None:
        """The operator pod whose identity (``<POD_NAME>_<suffix>``) holds the Lease."""
        holder = self.holder()
        leaders = [pod for pod in self.operator_pods() if holder.startswith(f"{pod}_")]
        assert len(leaders) <= 1, (holder, leaders)
        return leaders[0] if leaders else None

    def logs(self) -> str:
        return self("logs", "-n", SYSTEM, "-l", OPERATOR_PODS, "--tail=-1", "--prefix")

    def run_to_the_end(self, workflow: str) -> str:
        def ended() -> str | None:
            phase = self("get", "workflow", workflow, "-o", "jsonpath={.status.phase}")
            return phase if phase in ("Succeeded", "Failed") else None

        return eventually(ended, f"Workflow {workflow} to end")


def renamed(workflow: str) -> str:
    """The example's Workflow alone, under another name."""
    documents = [d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d]
    (found,) = [d for d in documents if d["kind"] == "Workflow"]
    found["metadata"]["name"] = workflow
    return yaml.safe_dump(found)


def test_the_installed_operator_runs_the_example_and_outlives_its_leader(
    cluster: pathlib.Path,
) -> None:
    kube = Cluster(cluster)
    pods = eventually(lambda: len(p := kube.operator_pods()) == 2 and p, "two operator pods")
    leader = eventually(kube.leader, "one operator pod to hold the Lease", timeout=120)
    assert leader in pods

    kube("apply", "-f", str(EXAMPLE))
    assert kube.run_to_the_end("launch-brief") == "Succeeded", kube.logs()[-4000:]
    table = kube("get", "workflows")
    assert "launch-brief" in table and "4/4" in table
    logs = kube.logs()  # the leader's, before its pod goes
    assert "forbidden" not in logs.lower(), logs[-4000:]

    kube("delete", "pod", leader, "-n", SYSTEM, "--timeout=120s")
    successor = eventually(
        lambda: (new := kube.leader()) not in (None, leader) and new,
        "another operator pod to take the Lease",
        timeout=120,
    )
    assert successor != leader
    kube("apply", "-f", "-", stdin=renamed("launch-brief-again"))
    assert kube.run_to_the_end("launch-brief-again") == "Succeeded", kube.logs()[-4000:]

    logs = kube.logs()
    assert "forbidden" not in logs.lower(), logs[-4000:]
