"""The Helm chart, installed: rendered by the real ``helm``, applied by the real ``kubectl``, run.

``helm install`` cannot run against the API emulator (it needs OpenAPI documents, protobuf and
server-side apply), so the chart is rendered with ``helm template`` (its CRDs included) and
applied with ``kubectl apply`` into ``troupe-system``, as ``helm install --create-namespace``
would create it. The harness then plays kubelet for the operator Deployment, as
``tests/integration/agent_pods.py`` does for Agents: each replica is the image's entrypoint
(``Dockerfile.operator``'s ``ENTRYPOINT``) with the container's args, run as a local process
with the container's environment as the kubelet resolves it (``value``, ``fieldRef``) and a
kubeconfig holding a token of the pod's ServiceAccount instead of the in-cluster one. So the
operator runs with exactly the RBAC the chart grants, evaluated by the emulator: a missing
permission is a 403 here. What the kubelet would do differently: each pod has its own IP, and
here they share loopback, so each gets a free metrics port (``TROUPE_METRICS_PORT``); a pod is
ready when ``/metrics`` answers (the chart's readinessProbe); a process that ends is started
again (the Deployment's restart).

The README's flow, under the chart's defaults (``untenantedNamespaces: Refuse``): ``helm
test``'s Pod (its command, against a replica's metrics port as the Service would route) passes;
the Tenant of ``examples/tenant.yaml`` becomes Ready; four examples (one a WorkflowTemplate
and the Workflow that runs it) run in its namespace ``research-dev`` (and
``examples/team.yaml``'s Agents get their Deployments, Services, identities and bindings),
and the leading replica is killed (SIGKILL) once the first task has succeeded: the standby
takes the Lease and every Workflow Succeeds, each task in one attempt, with no 403 in any
replica's log and every request of theirs carrying a chart ServiceAccount's token.

The values the test sets are timings (4 s leases, a 2 s resync), the metrics address
(loopback), and the task command: the Job runner runs task pods as local processes of this
machine's Python instead of the agent image's ``troupe-agent``.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import kubernetes
import pytest
import yaml

from tests.support.emulator import EmulatedCluster
from tests.support.helm import ROOT, Helm, container_env, helm_or_skip, tool_or_skip
from tests.support.jobrunner import JobRunner
from tests.support.loopback import free_port
from tests.support.restarting import RestartingProcess
from tests.support.waiting import wait_for

NAMESPACE, RELEASE = "troupe-system", "troupe"
TENANT, TEAM_NAMESPACE = "research-team", "research-dev"
EXAMPLES = {
    "serial-pipeline.yaml": "launch-brief",
    "fan-out-fan-in.yaml": "vendor-assessment",
    "hybrid-report.yaml": "quarterly-report",
    "workflow-template.yaml": "acme-brief",
}
"""The examples that run on the offline scripted model, and the Workflow each holds."""
SERVING = {"team.yaml": ("market-scout", "briefer", "launch-team")}
"""The examples of Agents served as pods (``replicas`` > 0), and those Agents."""
NOT_RUN = {
    "tenant.yaml": "applied first",
    "openai-endpoint.yaml": "needs a real API key",
    "triage.yaml": "run by test_local_run.py; its branches by test_workflow_conditions.py",
    "for-each.yaml": "run by test_local_run.py; its fan-out by test_workflow_fan_out.py",
    "best-of-three.yaml": "run by test_local_run.py; its judging by test_workflow_candidates.py",
    "deep-research.yaml": "run by test_local_run.py; its loop by test_workflow_supervise.py",
    "memoized.yaml": "run twice by test_local_run.py; its cache by test_workflow_memo.py",
}
OPERATOR_AGENTS = ("troupe-operator/", "kopf/")
REFUSAL = re.compile(r"forbidden|(?<![,.])\b403\b", re.IGNORECASE)
TEST_VALUES: dict[str, Any] = {
    "leaderElection": {
        "leaseDurationSeconds": 4,
        "renewDeadlineSeconds": 3,
        "retryPeriodSeconds": 0.5,
    },
    "operator": {
        "resyncSeconds": 2,
        "apiTimeoutSeconds": 5,
        "extraEnv": [
            {
                "name": "TROUPE_TASK_COMMAND",
                "value": shlex.join([sys.executable, "-m", "troupe_agent"]),
            },
            {"name": "TROUPE_POD_CHECK_SECONDS", "value": "1"},
            {"name": "TROUPE_METRICS_ADDRESS", "value": "127.0.0.1"},
        ],
    },
}


def image_entrypoint() -> list[str]:
    """``Dockerfile.operator``'s ENTRYPOINT, its ``kopf`` script run by this venv's Python."""
    dockerfile = (ROOT / "Dockerfile.operator").read_text()
    found = re.search(r"^ENTRYPOINT\s+(\[.*\])\s*$", dockerfile, re.MULTILINE)
    assert found, "Dockerfile.operator has no ENTRYPOINT in exec form"
    command: list[str] = json.loads(found.group(1))
    assert command[0] == "kopf", command
    return [sys.executable, "-m", "kopf", *command[1:]]


@dataclass
class OperatorPod:
    """One replica of the chart's Deployment: its container's command, restarted when it ends."""

    name: str
    process: RestartingProcess
    metrics_port: int

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def ready(self) -> bool:
        """The chart's readinessProbe: ``GET /metrics`` on the metrics port."""
        try:
            return httpx.get(self.metrics_url, timeout=1).status_code == 200
        except httpx.TransportError:
            return False


@dataclass
class Installed:
    emulator: EmulatedCluster
    kubectl: pathlib.Path
    kubeconfig: pathlib.Path
    directory: pathlib.Path
    pods: list[OperatorPod] = field(default_factory=list)
    tokens: set[str] = field(default_factory=set)

    def run_kubectl(self, *args: str) -> str:
        result = subprocess.run(
            [str(self.kubectl), "--kubeconfig", str(self.kubeconfig), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
        return result.stdout

    def start_deployment(self, name: str) -> list[OperatorPod]:
        """Every replica of Deployment ``name`` (in ``troupe-system``), once ready."""
        deployment = json.loads(
            self.run_kubectl("get", "deployment", name, "-n", NAMESPACE, "-o", "json")
        )
        template = deployment["spec"]["template"]
        (container,) = template["spec"]["containers"]
        command = [*image_entrypoint(), *(container.get("args") or [])]
        for index in range(deployment["spec"]["replicas"]):
            pod = f"{name}-{index}"
            token = self.emulator.token_for(NAMESPACE, template["spec"]["serviceAccountName"])
            self.tokens.add(token)
            kubeconfig = self.emulator.write_kubeconfig(
                self.directory / f"{pod}.kubeconfig", NAMESPACE, token=token
            )
            port = free_port()
            environment = {
                key: os.environ[key]
                for key in ("PATH", "PYTHONPATH", "VIRTUAL_ENV", "HOME")
                if key in os.environ
            }
            fields = {"metadata.name": pod, "metadata.namespace": NAMESPACE}
            environment |= container_env(container["env"], fields)
            environment |= {"TROUPE_METRICS_PORT": str(port), "KUBECONFIG": str(kubeconfig)}
            log = self.directory / f"{pod}.log"
            started = OperatorPod(pod, RestartingProcess(command, environment, log), port)
            started.process.start()
            self.pods.append(started)
        for started in self.pods:
            wait_for(started.ready, timeout=60, interval=0.1, what=f"{started.name} ready")
        return self.pods

    def logs(self) -> str:
        return "\n".join(pod.process.log.read_text(errors="replace") for pod in self.pods)

    def refusals(self) -> list[str]:
        return [line for line in self.logs().splitlines() if REFUSAL.search(line)]

    def stop(self) -> None:
        for pod in self.pods:
            pod.process.stop()


@pytest.fixture
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return helm_or_skip(tmp_path_factory.mktemp("helm-home"))


@pytest.fixture
def installed(
    emulator: EmulatedCluster,
    kubeconfig: pathlib.Path,
    job_runner: JobRunner,  # plays the Job controller and kubelet for task Jobs
    helm: Helm,
    tmp_path: pathlib.Path,
) -> Iterator[Installed]:
    kubectl = tool_or_skip("kubectl")
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(TEST_VALUES))
    rendered = helm.run(
        "template",
        RELEASE,
        str(ROOT / "charts" / "troupe"),
        "--namespace",
        NAMESPACE,
        "--include-crds",
        "--skip-tests",
        "--values",
        str(values),
    )
    assert rendered.returncode == 0, rendered.stderr
    manifest = tmp_path / "rendered.yaml"
    manifest.write_text(rendered.stdout)
    emulator.create_namespace(NAMESPACE)
    cluster = Installed(emulator, kubectl, kubeconfig, tmp_path)
    cluster.run_kubectl("apply", "--validate=false", "-f", str(manifest))
    try:
        yield cluster
    finally:
        cluster.stop()


def lease_holder(api: kubernetes.client.ApiClient) -> str:
    coordination = kubernetes.client.CoordinationV1Api(api)
    with contextlib.suppress(kubernetes.client.ApiException):
        lease: Any = coordination.read_namespaced_lease("troupe-operator", NAMESPACE)
        return str(lease.spec.holder_identity or "")
    return ""


def serving_children(api: kubernetes.client.ApiClient, agent: str) -> bool:
    """Whether the operator made Agent ``agent``'s Deployment and what it needs (under the
    chart's ClusterRole: it may grant its pods only what it holds itself)."""
    core, rbac = kubernetes.client.CoreV1Api(api), kubernetes.client.RbacAuthorizationV1Api(api)
    reads = [
        kubernetes.client.AppsV1Api(api).read_namespaced_deployment,
        core.read_namespaced_service,
        core.read_namespaced_service_account,
        rbac.read_namespaced_role,
        rbac.read_namespaced_role_binding,
    ]
    try:
        for read in reads:
            read(agent, TEAM_NAMESPACE)
    except kubernetes.client.ApiException as error:
        if error.status == 404:
            return False
        raise
    selector = f"troupe.dev/agent={agent}"
    return bool(rbac.list_cluster_role_binding(label_selector=selector).items)


def test_every_example_is_run_or_says_why_not() -> None:
    examples = {path.name for path in (ROOT / "examples").glob("*.yaml")}
    assert examples == {*EXAMPLES, *SERVING, *NOT_RUN}


def condition(body: dict[str, Any], kind: str) -> str:
    conditions = (body.get("status") or {}).get("conditions") or []
    return next((c["status"] for c in conditions if c["type"] == kind), "")


def workflow_status(api: kubernetes.client.ApiClient, name: str) -> dict[str, Any]:
    custom = kubernetes.client.CustomObjectsApi(api)
    try:
        body: Any = custom.get_namespaced_custom_object(
            "troupe.dev", "v1alpha1", TEAM_NAMESPACE, "workflows", name
        )
    except kubernetes.client.ApiException as error:
        if error.status == 404:
            return {}
        raise
    return body.get("status") or {}


@pytest.mark.timeout(300)
def test_the_chart_installs_an_operator_that_runs_the_readme_flow(
    installed: Installed, kube_api: kubernetes.client.ApiClient, helm: Helm
) -> None:
    cluster = installed
    # What kubectl applied: the chart's objects, under its names.
    rbac = kubernetes.client.RbacAuthorizationV1Api(kube_api)
    roles: Any = rbac.list_cluster_role().items
    assert {role.metadata.name for role in roles} >= {
        "troupe-operator",
        "troupe-view",
        "troupe-edit",
    }
    pods = cluster.start_deployment("troupe-operator")
    assert len(pods) == 2

    def fail_on_refusal() -> None:
        refused = cluster.refusals()
        assert refused == [], "\n".join(refused[:5])

    def until(probe: Any, what: str, timeout: float = 90) -> Any:
        def checked() -> Any:
            fail_on_refusal()
            return probe()

        return wait_for(checked, timeout=timeout, interval=0.1, what=what)

    leader = until(lambda: lease_holder(kube_api), "a Lease holder")
    assert leader.split("_")[0] in {pod.name for pod in pods}

    # helm test: the hook's command, against a replica as the metrics Service routes.
    (hook,) = [
        o
        for o in helm.template("--values", str(cluster.directory / "values.yaml"))
        if o["kind"] == "Pod"
    ]
    (container,) = hook["spec"]["containers"]
    env = {v["name"]: v["value"] for v in container["env"]}
    env |= {"METRICS_URL": pods[1].metrics_url, "PATH": os.environ.get("PATH", "")}
    helm_test = subprocess.run(
        [sys.executable, *container["command"][1:]],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert helm_test.returncode == 0, helm_test.stderr

    # The README: a Tenant, then the examples in its namespace.
    cluster.run_kubectl("apply", "-f", str(ROOT / "examples" / "tenant.yaml"))
    custom = kubernetes.client.CustomObjectsApi(kube_api)

    def tenant_ready() -> bool:
        tenant: Any = custom.get_cluster_custom_object("troupe.dev", "v1alpha1", "tenants", TENANT)
        return condition(tenant, "Ready") == "True"

    until(tenant_ready, "the Tenant Ready")
    for example in [*EXAMPLES, *SERVING]:
        cluster.run_kubectl("apply", "-n", TEAM_NAMESPACE, "-f", str(ROOT / "examples" / example))

    # Kill the leader once the first task of the serial pipeline has succeeded.
    until(
        lambda: any(
            task.get("phase") == "Succeeded"
            for task in (workflow_status(kube_api, "launch-brief").get("tasks") or {}).values()
        ),
        "the first task of launch-brief to succeed",
    )
    (leading,) = [pod for pod in pods if leader.startswith(f"{pod.name}_")]
    assert workflow_status(kube_api, "launch-brief").get("phase") == "Running"
    leading.process.kill()  # SIGKILL, as on a node failure; it starts again
    successor = until(
        lambda: (holder := lease_holder(kube_api)) not in ("", leader) and holder,
        "another replica to lead",
    )

    statuses = {
        name: until(
            lambda name=name: (
                (s := workflow_status(kube_api, name)).get("phase")
                in ("Succeeded", "Failed", "Error")
                and s
            ),
            f"{name} to end",
            timeout=120,
        )
        for name in EXAMPLES.values()
    }
    for agent in (name for names in SERVING.values() for name in names):
        until(lambda agent=agent: serving_children(kube_api, agent), f"{agent}'s children")
    for name, status in statuses.items():
        assert status["phase"] == "Succeeded", (name, status.get("message"))
        attempts = {task: s["attempts"] for task, s in status["tasks"].items()}
        assert set(attempts.values()) == {1}, (name, attempts)
    assert successor != leader
    fail_on_refusal()
    # The killed replica was started again; a replica may also have ended itself (status 1)
    # on a renewal late on a loaded machine, to start again as a standby. Nothing else.
    assert -signal.SIGKILL in leading.process.exits, cluster.logs()[-4000:]
    exits = [code for pod in pods for code in pod.process.exits]
    assert set(exits) <= {1, -signal.SIGKILL}, cluster.logs()[-4000:]

    # Every request of the replicas and of kopf carried a token of the chart's ServiceAccount.
    requests = [
        request
        for request in list(cluster.emulator.handler)
        if str(request.headers.get("User-Agent", "")).startswith(OPERATOR_AGENTS)
    ]
    assert requests
    assert {str(request.headers.get("Authorization")) for request in requests} <= {
        f"Bearer {token}" for token in cluster.tokens
    }
