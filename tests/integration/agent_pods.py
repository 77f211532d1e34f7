"""An Agent's pods as local processes, started from the Deployment the operator wrote.

The emulator has no kubelet for Deployments and no kube-proxy: this driver
plays both for serve-mode tests. It reads the Deployment of an Agent, runs its
container's command and args (the port swapped for a free one on loopback)
with the container's environment resolved as the kubelet would (``value``,
``fieldRef`` on the pod's name, namespace and IP, ``secretKeyRef``), a
kubeconfig with the token of the pod's ServiceAccount, and short election
timings; ``TROUPE_MEMBERS`` is pointed at the member pods' loopback addresses,
as their Services would route.
"""

from __future__ import annotations

import base64
import json
import os
import pathlib
import signal
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import kubernetes

from tests.integration.troupe_driver import ELECTION_ENV
from tests.support.emulator import EmulatedCluster
from tests.support.loopback import free_port
from tests.support.restarting import terminate
from tests.support.waiting import wait_for
from troupe_operator.api.serve_env import MEMBERS_ENV

NAMESPACE = "default"
POD_IP = "127.0.0.1"
STATUS_PERIOD = {"TROUPE_SUPERVISOR_STATUS_SECONDS": "0.3"}


@dataclass
class AgentPod:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: pathlib.Path

    def supervisor(self) -> dict[str, Any]:
        view: dict[str, Any] = httpx.get(f"{self.url}/v1/supervisor", timeout=5).json()
        return view

    def kill(self) -> None:
        """SIGKILL: the pod dies without releasing anything, as on a node failure."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            terminate(self.process)


@dataclass
class AgentPods:
    emulator: EmulatedCluster
    api: kubernetes.client.ApiClient
    directory: pathlib.Path
    pods: list[AgentPod] = field(default_factory=list)

    def start(self, deployment: str, pod: str, members: Mapping[str, AgentPod] = {}) -> AgentPod:
        """Pod ``pod`` of Deployment ``deployment``, once it answers ``/healthz``."""
        body = kubernetes.client.AppsV1Api(self.api).read_namespaced_deployment(
            deployment, NAMESPACE
        )
        template = self.api.sanitize_for_serialization(body.spec.template)
        container = template["spec"]["containers"][0]
        port = free_port(POD_IP)
        args = list(container.get("args") or [])
        args[args.index("--port") + 1] = str(port)
        token = self.emulator.token_for(NAMESPACE, template["spec"]["serviceAccountName"])
        kubeconfig = self.emulator.write_kubeconfig(
            self.directory / f"{pod}.kubeconfig", token=token
        )
        environment = {
            name: os.environ[name]
            for name in ("PATH", "PYTHONPATH", "VIRTUAL_ENV", "HOME")
            if name in os.environ
        }
        environment.update(self._resolved(container.get("env") or [], pod))
        if MEMBERS_ENV in environment:
            environment[MEMBERS_ENV] = json.dumps({name: m.url for name, m in members.items()})
        environment.update({"KUBECONFIG": str(kubeconfig), **ELECTION_ENV, **STATUS_PERIOD})
        log = self.directory / f"{pod}.log"
        with log.open("ab") as output:
            process = subprocess.Popen(
                [*container["command"], *args],
                env=environment,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        started = AgentPod(pod, f"http://{POD_IP}:{port}", process, log)
        self.pods.append(started)
        wait_for(lambda: _healthy(started), timeout=120, interval=0.05, what=f"{pod} to serve")
        return started

    def _resolved(self, env: list[dict[str, Any]], pod: str) -> dict[str, str]:
        fields = {"metadata.name": pod, "metadata.namespace": NAMESPACE, "status.podIP": POD_IP}
        resolved = {}
        for variable in env:
            source = variable.get("valueFrom") or {}
            if "fieldRef" in source:
                resolved[variable["name"]] = fields[source["fieldRef"]["fieldPath"]]
            elif "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                secret = kubernetes.client.CoreV1Api(self.api).read_namespaced_secret(
                    ref["name"], NAMESPACE
                )
                resolved[variable["name"]] = base64.b64decode(secret.data[ref["key"]]).decode()
            else:
                resolved[variable["name"]] = variable.get("value", "")
        return resolved

    def stop(self) -> None:
        for pod in self.pods:
            pod.stop()


def _healthy(pod: AgentPod) -> bool:
    if pod.process.poll() is not None:
        raise AssertionError(f"{pod.name} exited {pod.process.returncode}:\n{pod.log.read_text()}")
    try:
        return httpx.get(f"{pod.url}/readyz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def agent_pods(
    emulator: EmulatedCluster, api: kubernetes.client.ApiClient, directory: pathlib.Path
) -> Iterator[AgentPods]:
    """For a fixture: the pods started in the test, stopped after it."""
    pods = AgentPods(emulator, api, directory)
    try:
        yield pods
    finally:
        pods.stop()
