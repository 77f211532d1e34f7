"""Drives the real Troupe operator against the emulator, for the controller's tests.

Starts the operator's own handlers (not a test double) with the Job runner
playing the kubelet, applies manifests, and waits for Workflow phases with
bounded polling.
"""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import kopf
import kubernetes
from kubernetes.aio import client as aio_client

from tests.support.fixtures import RunOperator
from tests.support.waiting import wait_for
from troupe_operator.controller.config import OperatorConfig
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
        task.setdefault("agent", "worker")
        task.setdefault("prompt", f"TASK={task['name']}")
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Workflow",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"retryBackoffSeconds": 0, **spec, "tasks": tasks},
    }


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
        config = OperatorConfig(
            agent_image="unused-by-the-job-runner",
            task_command=(sys.executable, "-m", "troupe_agent"),
            resync_seconds=2.0,
            pod_check_seconds=1.0,
            api_timeout_seconds=5.0,
            **settings,
        )
        host = self.api.configuration.host

        async def connect() -> aio_client.ApiClient:
            return api_client(aio_client.Configuration(host=host), USER_AGENT)

        registry = kopf.OperatorRegistry()
        controller = register(registry, lambda: config, connect)
        with self.run_operator(registry, clusterwide=True):
            yield controller

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
