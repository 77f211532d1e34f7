"""The seed pipeline on a real kind cluster: real API server, Job controller and kubelet.

Builds both images, loads them into a fresh kind cluster, applies the CRDs,
runs the operator against the cluster from this machine, applies the serial
example and waits for ``kubectl get workflows`` to show it Succeeded. Needs
Docker and kind (see conftest.py); ``make e2e`` runs it.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
AGENT_IMAGE = "troupe-agent:e2e"
OPERATOR_IMAGE = "troupe-operator:e2e"

pytestmark = pytest.mark.e2e


def run(*args: str, timeout: float = 600, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        args, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
    assert result.returncode == 0, f"{' '.join(args)} failed: {result.stderr[-2000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pathlib.Path]:
    name = f"troupe-e2e-{uuid.uuid4().hex[:6]}"
    kubeconfig = tmp_path_factory.mktemp("kind") / "kubeconfig"
    run("docker", "build", "-f", "Dockerfile.agent", "-t", AGENT_IMAGE, ".", timeout=1200)
    run("docker", "build", "-f", "Dockerfile.operator", "-t", OPERATOR_IMAGE, ".", timeout=1200)
    run("kind", "create", "cluster", "--name", name, "--kubeconfig", str(kubeconfig))
    try:
        run("kind", "load", "docker-image", AGENT_IMAGE, OPERATOR_IMAGE, "--name", name)
        run("kubectl", "--kubeconfig", str(kubeconfig), "apply", "-f", "crds/")
        yield kubeconfig
    finally:
        run("kind", "delete", "cluster", "--name", name)


def test_serial_example_succeeds_on_kind(cluster: pathlib.Path) -> None:
    kubectl = ("kubectl", "--kubeconfig", str(cluster))
    env = {**os.environ, "KUBECONFIG": str(cluster), "TROUPE_AGENT_IMAGE": AGENT_IMAGE}
    command = ["kopf", "run", "--standalone", "--all-namespaces", "-m", "troupe_operator.main"]
    operator = subprocess.Popen(
        [sys.executable, "-m", *command],
        cwd=ROOT,
        env=env,
    )
    try:
        run(*kubectl, "apply", "-f", "examples/serial-pipeline.yaml")
        deadline = time.monotonic() + 600
        phase = ""
        while time.monotonic() < deadline and phase not in ("Succeeded", "Failed"):
            time.sleep(5)
            phase = run(
                *kubectl, "get", "workflow", "launch-brief", "-o", "jsonpath={.status.phase}"
            )
        assert phase == "Succeeded"
        table = run(*kubectl, "get", "workflows")
        assert "launch-brief" in table and "4/4" in table
    finally:
        operator.terminate()
        operator.wait(30)
