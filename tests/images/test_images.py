"""Both images, as ``images/build.sh`` builds them, smoke-tested inside themselves.

``make images`` builds them daemonless (as root, with Debian's ``buildah``, FROM a stand-in
for python:3.11-slim-bookworm made from Debian packages, since no base image can be pulled
on these machines: see ``images/build.sh``) and then runs these tests with
``TROUPE_IMAGES=1``; anywhere else they skip with one line.

The smoke run is the real chain, on loopback: the operator image's entry point, with the
args and environment of the chart's Deployment, leads (its Lease in the API emulator) and
serves ``/metrics``; a Workflow of two tasks runs to Succeeded, each task's Job played by
the harness's kubelet *inside the agent image* (``tests/support/buildah.py``: the Pod's
command, env, volumes and ServiceAccount token, as user 10001) against the
OpenAI-compatible stub, each writing its output through the API. Not covered here: the
chart's RBAC (``tests/integration/test_chart_install.py``) and a real kubelet's isolation
(``make e2e``, on kind).
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import signal
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import kubernetes
import pytest

from tests.integration.troupe_driver import GROUP, VERSION, agent, reply_naming_the_task
from tests.integration.troupe_driver import workflow as workflow_of
from tests.support.buildah import (
    buildah,
    image_config,
    output_of,
    pods_in,
    run_in,
    working_container,
)
from tests.support.emulator import EmulatedCluster
from tests.support.helm import container_env, helm_or_skip
from tests.support.jobrunner import JobRunner
from tests.support.loopback import free_port
from tests.support.openai_stub import OpenAIStub
from tests.support.waiting import wait_for

TAG = os.environ.get("TAG", "dev")
OPERATOR_IMAGE = f"localhost/troupe-operator:{TAG}"
AGENT_IMAGE = f"localhost/troupe-agent:{TAG}"
USER = 10001
SYSTEM = "troupe-system"
API_KEY = "sk-smoke-test"
LEADER_SERIES = 'leader_election_master_status{name="troupe-operator"} 1.0'


@pytest.fixture(scope="module")
def images() -> tuple[str, str]:
    if os.environ.get("TROUPE_IMAGES") != "1":
        pytest.skip("images are built and smoke-tested by `make images` (root, Debian's buildah)")
    for image in (OPERATOR_IMAGE, AGENT_IMAGE):
        assert buildah("images", "--quiet", image).strip(), f"{image} missing: run images/build.sh"
    return OPERATOR_IMAGE, AGENT_IMAGE


PROBE = (
    "import importlib, importlib.util, os, sys; "
    "[importlib.import_module(m) for m in sys.argv[1].split()]; "
    "print(os.getuid(), [m for m in sys.argv[2].split() if importlib.util.find_spec(m)])"
)
"""Imports what the image must have; prints its user and what of the rest it has."""


@pytest.mark.parametrize(
    ("image", "entrypoint", "present", "absent"),
    [
        (
            OPERATOR_IMAGE,
            ["kopf", "run", "--all-namespaces", "-m", "troupe_operator.main"],
            "troupe_operator.main kopf kubernetes.aio",
            "troupe_agent langgraph langchain_openai pip",
        ),
        (
            AGENT_IMAGE,
            ["troupe-agent"],
            "troupe_agent.task troupe_agent.serve langgraph langchain_openai",
            "kopf kubernetes.aio pip",
        ),
    ],
)
def test_an_image_runs_as_10001_with_its_own_extra_and_no_pip(
    images: tuple[str, str],
    image: str,
    entrypoint: list[str],
    present: str,
    absent: str,
) -> None:
    config = image_config(image)
    assert (config["User"], config["Entrypoint"]) == (f"{USER}:{USER}", entrypoint)
    assert output_of(image, "python", "-c", PROBE, present, absent).strip() == f"{USER} []"


# --- the smoke run: operator image -> Workflow -> Jobs -> agent image -> outputs ---------------


def chart_container(tmp_path: pathlib.Path) -> dict[str, Any]:
    """The operator container of the chart's Deployment, for these images."""
    helm = helm_or_skip(tmp_path / "helm")
    objects = helm.template(
        "--set", f"image.repository=localhost/troupe-operator,image.tag={TAG}",
        "--set", f"agentImage.repository=localhost/troupe-agent,agentImage.tag={TAG}",
        # A single-team cluster: the smoke Workflow runs in `default`, which no Tenant owns.
        "--set", "operator.untenantedNamespaces=Allow",
    )  # fmt: skip
    [deployment] = [o for o in objects if o["kind"] == "Deployment"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == OPERATOR_IMAGE and "command" not in container
    return dict(container)


@contextlib.contextmanager
def operator_in_image(
    emulator: EmulatedCluster, container: dict[str, Any], directory: pathlib.Path
) -> Iterator[tuple[pathlib.Path, int]]:
    """The image's entry point with the chart's args and env, until the block ends."""
    port = free_port()
    fields = {"metadata.name": "troupe-operator-0", "metadata.namespace": SYSTEM}
    env = container_env(container["env"], fields) | {
        "TROUPE_METRICS_ADDRESS": "127.0.0.1",
        "TROUPE_METRICS_PORT": str(port),  # the host's network: not the chart's fixed port
        "KUBECONFIG": str(emulator.write_kubeconfig(directory / "kubeconfig", SYSTEM)),
    }
    for path in [directory, *directory.iterdir()]:
        os.chown(path, USER, USER)
    log = directory / "operator.log"
    argv = [*image_config(OPERATOR_IMAGE)["Entrypoint"], *container["args"]]
    with working_container(OPERATOR_IMAGE) as name, log.open("wb") as output:
        process = subprocess.Popen(
            run_in(name, argv, env, {directory: str(directory)}),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield log, port
        finally:
            os.killpg(process.pid, signal.SIGTERM)  # buildah and the operator under it
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


@pytest.fixture
def stub() -> Iterator[OpenAIStub]:
    with OpenAIStub(reply_naming_the_task) as running:
        yield running


def metrics(port: int) -> str:
    """The operator's /metrics; "" while it does not listen yet."""
    try:
        return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except httpx.TransportError:
        return ""


def test_the_operator_image_runs_a_workflow_whose_tasks_run_in_the_agent_image(
    images: tuple[str, str],
    emulator: EmulatedCluster,
    kube_api: kubernetes.client.ApiClient,
    stub: OpenAIStub,
    tmp_path: pathlib.Path,
) -> None:
    container = chart_container(tmp_path)
    emulator.create_namespace(SYSTEM)
    (tmp_path / "operator").mkdir()
    custom = kubernetes.client.CustomObjectsApi(kube_api)
    tasks: list[dict[str, Any]] = [
        {"name": "plan"},
        {"name": "write", "dependsOn": ["plan"], "prompt": "TASK=write {{ tasks.plan.output }}"},
    ]
    with (
        working_container(AGENT_IMAGE) as agent_container,
        JobRunner(emulator.url, tmp_path / "pods", launch=pods_in(agent_container, USER)),
        operator_in_image(emulator, container, tmp_path / "operator") as (log, port),
    ):
        wait_for(
            lambda: LEADER_SERIES in metrics(port), timeout=90, interval=0.5, what=f"lead: {log}"
        )
        kubernetes.client.CoreV1Api(kube_api).create_namespaced_secret(
            "default", {"metadata": {"name": "model-key"}, "stringData": {"api-key": API_KEY}}
        )
        worker = agent("worker", stub.base_url, apiKeySecretRef={"name": "model-key"})
        for document in (worker, workflow_of("smoke", tasks)):
            plural = document["kind"].lower() + "s"
            custom.create_namespaced_custom_object(GROUP, VERSION, "default", plural, document)

        def ended() -> dict[str, Any] | None:
            found: dict[str, Any] = custom.get_namespaced_custom_object(
                GROUP, VERSION, "default", "workflows", "smoke"
            )
            status: dict[str, Any] = found.get("status") or {}
            return status if status.get("phase") in ("Succeeded", "Failed") else None

        status: dict[str, Any] = wait_for(
            ended, timeout=300, interval=0.5, what=f"the Workflow to end (operator log: {log})"
        )
        served = metrics(port)
    pod_logs = [path.read_text() for path in (tmp_path / "pods").rglob("log")]
    assert status["phase"] == "Succeeded", (status, pod_logs)
    for name in ("plan", "write"):
        assert status["tasks"][name]["preview"] == f"output-of-{name}"
        assert status["tasks"][name]["usage"]["totalTokens"] > 0
    [plan, write] = stub.chat_requests
    assert "output-of-plan" in str(write.body["messages"])  # the upstream output, in the prompt
    assert {plan.headers["Authorization"], write.headers["Authorization"]} == {f"Bearer {API_KEY}"}
    # Each task's process ran as the image's user: the reports it wrote are 10001's, not root's.
    reports = list((tmp_path / "pods").rglob("termination-log"))
    assert len(reports) == 2 and {path.stat().st_uid for path in reports} == {USER}
    jobs = kubernetes.client.BatchV1Api(kube_api).list_namespaced_job("default")
    [images_run] = {
        job["spec"]["template"]["spec"]["containers"][0]["image"]
        for job in kube_api.sanitize_for_serialization(jobs)["items"]
    }
    assert images_run == AGENT_IMAGE
    assert 'troupe_tasks_succeeded_total{agent="worker",namespace="default"} 2.0' in served
    assert "Traceback" not in log.read_text(), log.read_text()
