"""Drives the real Troupe operator against the emulator, for the controller's tests.

Starts the operator's own handlers (not a test double) with the Job runner
playing the kubelet, in this process or as its own ``kopf run`` process
(restarted when it exits, as a Deployment would be), applies manifests, and
waits for Workflow phases with bounded polling.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import re
import shlex
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import kopf
import kubernetes
from kubernetes.aio import client as aio_client

from tests.support.fixtures import RunOperator
from tests.support.loopback import free_port
from tests.support.restarting import RestartingProcess
from tests.support.waiting import wait_for
from troupe_operator.controller.config import OperatorConfig, UntenantedNamespaces
from troupe_operator.controller.handlers import Controller, api_client, register
from troupe_operator.main import USER_AGENT
from troupe_operator.workflow import WorkflowRef

GROUP, VERSION = "troupe.dev", "v1alpha1"
TASK_MARK = re.compile(r"TASK=([a-z0-9-]+)")


def reply_naming_the_task(body: dict[str, Any]) -> str:
    """The stub's reply: ``output-of-<task>``, for the task named by ``TASK=`` in the prompt."""
    prompts = [m["content"] for m in body["messages"] if m["role"] == "user"]
    found = TASK_MARK.search(str(prompts[0])) if prompts else None
    return f"output-of-{found.group(1) if found else 'unknown'}"


def agent(name: str, base_url: str, **model: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Agent",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "role": "executor",
            "model": {"name": "stub-model", "baseURL": base_url, "maxRetries": 0, **model},
        },
    }


def workflow(name: str, tasks: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    for task in tasks:
        if "agentSelector" not in task:
            task.setdefault("agent", "worker")
        task.setdefault("prompt", f"TASK={task['name']}")
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Workflow",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"retryBackoffSeconds": 0, **spec, "tasks": tasks},
    }


TEST_CONFIG = OperatorConfig(
    agent_image="unused-by-the-job-runner",
    task_command=(sys.executable, "-m", "troupe_agent"),
    resync_seconds=2.0,
    pod_check_seconds=1.0,
    api_timeout_seconds=5.0,
    # The tests run in namespaces no Tenant owns (``default``), as a single-team cluster.
    untenanted_namespaces=UntenantedNamespaces.ALLOW,
)


ELECTION_ENV = {
    "TROUPE_LEASE_DURATION_SECONDS": "2",
    "TROUPE_RENEW_DEADLINE_SECONDS": "1",
    "TROUPE_RETRY_PERIOD_SECONDS": "0.2",
}
"""Short leases, so that a restarted operator process leads again within seconds."""

STEADY_LEASES = {
    "TROUPE_LEASE_DURATION_SECONDS": "15",
    "TROUPE_RENEW_DEADLINE_SECONDS": "10",
    "TROUPE_RETRY_PERIOD_SECONDS": "2",
}
"""client-go's timings, for one process that must never exit: a renewal late by a second on a
loaded machine loses a 2 s lease, and losing it ends the process, as it must."""


@dataclass
class OperatorProcess:
    """``kopf run -m troupe_operator.main`` against the emulator, started again when it exits.

    ``exits`` counts the times it ended on its own (a crash), as a kubelet
    would count restarts; its output goes to ``log``.
    """

    kubeconfig: pathlib.Path
    log: pathlib.Path
    identity: str = "operator"
    """Its POD_NAME, the first part of its leader-election identity."""
    pod_namespace: str = "default"
    """Its POD_NAMESPACE: where its Lease is."""
    metrics_port: int = field(default_factory=free_port)
    """Where it serves ``/metrics`` on loopback (``TROUPE_METRICS_PORT``)."""
    environment: dict[str, str] = field(default_factory=dict)
    """Settings of its own, over the tests' (e.g. longer leases, for a loaded machine)."""
    _running: RestartingProcess | None = None

    def start(self) -> None:
        environment = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "TROUPE_TASK_COMMAND": shlex.join(TEST_CONFIG.task_command),
            "TROUPE_RESYNC_SECONDS": str(TEST_CONFIG.resync_seconds),
            "TROUPE_POD_CHECK_SECONDS": str(TEST_CONFIG.pod_check_seconds),
            "TROUPE_API_TIMEOUT_SECONDS": str(TEST_CONFIG.api_timeout_seconds),
            "TROUPE_UNTENANTED_NAMESPACES": str(TEST_CONFIG.untenanted_namespaces),
            "POD_NAME": self.identity,
            "POD_NAMESPACE": self.pod_namespace,
            "TROUPE_METRICS_PORT": str(self.metrics_port),
            "TROUPE_METRICS_ADDRESS": "127.0.0.1",
            **ELECTION_ENV,
            **self.environment,
        }
        command = [sys.executable, "-m", "kopf", "run", "--standalone", "--all-namespaces"]
        self._running = RestartingProcess(
            [*command, "-m", "troupe_operator.main"], environment, self.log
        )
        self._running.start()

    @property
    def exits(self) -> list[int]:
        return self._running.exits if self._running is not None else []

    def signal(self, sig: int) -> None:
        """Send ``sig`` and do not start it again, as a Deployment scaled down would not."""
        if self._running is not None:
            self._running.signal(sig)

    def stop(self) -> None:
        if self._running is not None:
            self._running.stop()


@dataclass
class Troupe:
    """The cluster as a test sees it, plus the operator that can be (re)started."""

    api: kubernetes.client.ApiClient
    run_operator: RunOperator

    @property
    def custom(self) -> kubernetes.client.CustomObjectsApi:
        return kubernetes.client.CustomObjectsApi(self.api)

    @property
    def core(self) -> kubernetes.client.CoreV1Api:
        return kubernetes.client.CoreV1Api(self.api)

    @contextlib.contextmanager
    def operator(self, **settings: Any) -> Iterator[Controller]:
        """The real operator's handlers, freshly built, running until the block ends."""
        config = dataclasses.replace(TEST_CONFIG, **settings)
        host = self.api.configuration.host

        async def connect() -> aio_client.ApiClient:
            return api_client(aio_client.Configuration(host=host), USER_AGENT)

        registry = kopf.OperatorRegistry()
        controller = register(registry, lambda: config, connect)
        with self.run_operator(registry, clusterwide=True):
            yield controller

    @contextlib.contextmanager
    def operator_process(
        self,
        kubeconfig: pathlib.Path,
        identity: str = "operator",
        environment: dict[str, str] | None = None,
    ) -> Iterator[OperatorProcess]:
        """The real operator as its own process, restarted whenever it exits on its own."""
        log = kubeconfig.with_name(f"{identity}.log")
        process = OperatorProcess(kubeconfig, log, identity, environment=environment or {})
        process.start()
        try:
            yield process
        finally:
            process.stop()

    def apply(self, *documents: dict[str, Any]) -> None:
        for document in documents:
            plural = document["kind"].lower() + "s"
            self.custom.create_namespaced_custom_object(GROUP, VERSION, "default", plural, document)

    def delete_workflow(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, "default", "workflows", name)

    def workflow(self, name: str) -> dict[str, Any]:
        body: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, "default", "workflows", name
        )
        return body

    def run(self, name: str) -> WorkflowRef:
        """The Workflow as the names of its children derive from it."""
        return WorkflowRef("default", name, self.workflow(name)["metadata"]["uid"])

    def status(self, name: str) -> dict[str, Any]:
        return self.workflow(name).get("status") or {}

    def wait_for_phase(self, name: str, *phases: str, timeout: float = 60) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            status = self.status(name)
            return status if status.get("phase") in phases else None

        return wait_for(reached, timeout=timeout, interval=0.1, what=f"{name} to be {phases}")

    def jobs(self, name: str) -> list[Any]:
        selector = f"troupe.dev/workflow={name}"
        batch = kubernetes.client.BatchV1Api(self.api)
        return list(batch.list_namespaced_job("default", label_selector=selector).items)

    def config_maps(self, name: str) -> dict[str, dict[str, str]]:
        selector = f"troupe.dev/workflow={name}"
        items = self.core.list_namespaced_config_map("default", label_selector=selector).items
        return {item.metadata.name: item.data or {} for item in items}

    def event_reasons(self, name: str) -> list[str]:
        events = self.core.list_namespaced_event("default").items
        return [e.reason for e in events if e.involved_object.name == name]
