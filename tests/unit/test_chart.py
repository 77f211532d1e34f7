"""The Helm chart ``charts/troupe``, checked with the real ``helm`` (``make tools`` installs it).

Lint (``--strict``) and render it with default values, with the monitors on (and the
Prometheus Operator's API announced), and with other values; every rendered object must
pass ``kubernetes-validate --strict`` (ServiceMonitor and PodMonitor, which it has no
schema for, pass the Prometheus Operator's own validators instead), carry Helm's standard
labels, and run locked down; ``checkov`` (``make tools`` installs it) finds nothing that
is not suppressed in the chart with its reason. The schema refuses unknown keys. The
ClusterRoles are ``deploy/operator.yaml``'s, rule for rule, and so are the operator's
settings: the rendered environment is read by the operator's own parsers (and the OTEL_*
variables by the OpenTelemetry SDK). The ``helm test`` Pod's script is run against the
operator's real election gauge served by prometheus-client.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from opentelemetry import environment_variables as api_variables
from opentelemetry.sdk import environment_variables as sdk_variables
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry, start_http_server

from tests.support.helm import (
    CHART,
    ROOT,
    Helm,
    container_env,
    helm_or_skip,
    make_tool,
    tool_or_skip,
)
from tests.support.tools import missing_tool
from troupe_operator import otel_config
from troupe_operator.agents import children as agent_children
from troupe_operator.api import AgentSpec
from troupe_operator.controller.config import OperatorConfig, UntenantedNamespaces
from troupe_operator.election.metrics import master_status
from troupe_operator.leadership import LeadershipSettings
from troupe_operator.metrics_endpoint import metrics_port

MANIFEST = ROOT / "deploy" / "operator.yaml"
RELEASE, NAMESPACE = "troupe", "troupe-system"
KUBERNETES_VERSION = kubernetes_validate.latest_version()
MONITORING_API = ("--api-versions", "monitoring.coreos.com/v1")
MONITORING_KINDS = ("ServiceMonitor", "PodMonitor")
STANDARD_LABELS = (
    "helm.sh/chart",
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
)
PROMETHEUS_MODELS = Path(sys.prefix) / "node" / "node_modules"
"""Where ``make tools`` installs ``@kubernetes-models/prometheus-operator``."""
PROMETHEUS_MODELS_PACKAGE = (
    PROMETHEUS_MODELS / "@kubernetes-models" / "prometheus-operator" / "package.json"
)

Object = dict[str, Any]

MONITORS = [
    *("--set", "serviceMonitor.enabled=true", "--set", "podMonitor.enabled=true"),
    *("--set", "serviceMonitor.labels.release=kube-prometheus-stack"),
    *("--set", "podMonitor.labels.release=kube-prometheus-stack"),
]
CUSTOM: dict[str, Any] = {
    "fullnameOverride": "acme-troupe",
    "commonLabels": {"team": "platform"},
    "image": {"repository": "registry.example/troupe-operator", "tag": "1.2.3"},
    "agentImage": {"repository": "registry.example/troupe-agent", "digest": "sha256:" + "a" * 64},
    "imagePullSecrets": [{"name": "registry"}],
    "replicaCount": 3,
    "leaderElection": {
        "enabled": True,
        "leaseDurationSeconds": 30,
        "renewDeadlineSeconds": 20,
        "retryPeriodSeconds": 4,
    },
    "operator": {
        "untenantedNamespaces": "Allow",
        "apiServer": {"cidr": "172.18.0.2/32", "ports": [6443, 443]},
        "workers": 8,
        "resyncSeconds": 60,
        "apiTimeoutSeconds": 20,
        "taskEvents": "all",
        "cache": {"maxEntries": 50, "retentionSeconds": 86400},
        "extraEnv": [{"name": "HTTPS_PROXY", "value": "http://proxy.example:3128"}],
    },
    "tracing": {"enabled": True, "endpoint": "https://otel.example:4318"},
    "metrics": {"port": 9090, "service": {"port": 9091, "annotations": {"a": "b"}}},
    "serviceMonitor": {"enabled": True, "labels": {"release": "prom"}, "interval": "1m"},
    "podMonitor": {"enabled": True, "namespaceSelector": {"matchNames": ["research-dev"]}},
    "serviceAccount": {"annotations": {"example.com/role": "operator"}},
    "resources": {"requests": {"cpu": "200m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
    "podAnnotations": {"example.com/scrape": "true"},
    "podLabels": {"tier": "control"},
    "priorityClassName": "system-cluster-critical",
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
    "topologySpreadConstraints": [
        {
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": {"app.kubernetes.io/component": "operator"}},
        }
    ],
    "podDisruptionBudget": {"maxUnavailable": "50%"},
    "networkPolicy": {
        "metricsFrom": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
        ]
    },
    "tests": {"image": {"repository": "registry.example/python", "tag": "3.11-slim"}},
}
SINGLE: dict[str, Any] = {
    "replicaCount": 1,
    "leaderElection": {"enabled": False},
    "serviceAccount": {"create": False, "name": "existing"},
    "rbac": {"create": False, "userRoles": False},
    "podDisruptionBudget": {"enabled": False},
    "networkPolicy": {"enabled": False},
}


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return helm_or_skip(tmp_path_factory.mktemp("helm-home"))


@pytest.fixture(scope="module")
def custom_values(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("values") / "custom.yaml"
    path.write_text(yaml.safe_dump(CUSTOM))
    return path


@pytest.fixture(scope="module")
def single_values(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("values") / "single.yaml"
    path.write_text(yaml.safe_dump(SINGLE))
    return path


VARIANTS = ["defaults", "monitors", "custom", "single"]


@pytest.fixture(params=VARIANTS)
def variant(
    request: pytest.FixtureRequest, custom_values: Path, single_values: Path
) -> tuple[str, list[str]]:
    name: str = request.param
    args = {
        "defaults": [],
        "monitors": [*MONITORS, *MONITORING_API],
        "custom": ["--values", str(custom_values), *MONITORING_API],
        "single": ["--values", str(single_values)],
    }[name]
    return name, args


def by_kind(objects: list[Object], kind: str) -> list[Object]:
    return [o for o in objects if o["kind"] == kind]


def the(objects: list[Object], kind: str, name: str | None = None) -> Object:
    (found,) = [o for o in by_kind(objects, kind) if name in (None, o["metadata"]["name"])]
    return found


def manifest(kind: str, name: str) -> Object:
    (found,) = [
        d
        for d in yaml.safe_load_all(MANIFEST.read_text())
        if d and (d["kind"], d["metadata"]["name"]) == (kind, name)
    ]
    return dict(found)


def operator_container(objects: list[Object]) -> Object:
    (container,) = the(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    return dict(container)


def plain_env(container: Object) -> dict[str, str]:
    """The container's environment as the process sees it (downward API values filled in)."""
    return container_env(
        container["env"], {"metadata.name": "pod-0", "metadata.namespace": NAMESPACE}
    )


def subset(small: dict[str, str], big: dict[str, str]) -> bool:
    return all(big.get(key) == value for key, value in small.items())


# --- helm lint, the schema --------------------------------------------------------------


@pytest.mark.parametrize("values", ["defaults", "monitors", "custom", "single"])
def test_helm_lint_strict_passes(
    helm: Helm, values: str, custom_values: Path, single_values: Path
) -> None:
    extra = {
        "defaults": [],
        "monitors": MONITORS,
        "custom": ["--values", str(custom_values)],
        "single": ["--values", str(single_values)],
    }[values]
    result = helm.run("lint", "--strict", str(CHART), *extra)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout


def test_values_yaml_fits_its_schema() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.validate(yaml.safe_load((CHART / "values.yaml").read_text()), schema)
    jsonschema.validate(CUSTOM, schema)
    assert schema["additionalProperties"] is False


def schema_objects(node: Any, path: str = "") -> Iterator[tuple[str, Object]]:
    if isinstance(node, dict):
        if node.get("type") == "object" and "properties" in node:
            yield path, node
        for key, value in node.items():
            yield from schema_objects(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from schema_objects(value, f"{path}/{index}")


def test_every_object_of_the_schema_with_properties_is_closed() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    open_ones = [
        path
        for path, node in schema_objects(schema)
        if node.get("additionalProperties") is not False and not path.endswith("extraEnv/items")
    ]
    assert open_ones == []


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ("bogus=1", "additional properties 'bogus' not allowed"),
        ("image.bogus=1", "additional properties 'bogus' not allowed"),
        ("serviceMonitor.label.release=x", "additional properties 'label' not allowed"),
        ("leaderElection.leaseDuration=30", "additional properties 'leaseDuration' not allowed"),
        ("operator.untenantedNamespaces=Sometimes", "untenantedNamespaces"),
        ("replicaCount=0", "replicaCount"),
        ("serviceMonitor.interval=soon", "interval"),
        ("metrics.port=70000", "port"),
        ("tracing.enabled=true", "endpoint"),
        ("tracing.sampler=sometimes", "sampler"),
        ("networkPolicy.metricsFrom[0].pods=x", "additional properties 'pods' not allowed"),
    ],
)
def test_the_schema_refuses_bad_values(helm: Helm, setting: str, complaint: str) -> None:
    result = helm.run("template", RELEASE, str(CHART), "--set", setting)
    assert result.returncode != 0
    assert "schema" in result.stderr and complaint in result.stderr, result.stderr


def test_replicas_without_leader_election_are_refused(helm: Helm) -> None:
    result = helm.run("template", RELEASE, str(CHART), "--set", "leaderElection.enabled=false")
    assert result.returncode != 0
    assert "leaderElection.enabled=false needs replicaCount: 1" in result.stderr


# --- every rendered object --------------------------------------------------------------


def validate_monitors(monitors: list[Object]) -> None:
    """The Prometheus Operator's own validators (npm @kubernetes-models/prometheus-operator)."""
    node = shutil.which("node")
    if node is None:
        missing_tool("node is not installed: the monitors' schema check cannot run")
    if not PROMETHEUS_MODELS_PACKAGE.is_file():
        why = make_tool(PROMETHEUS_MODELS_PACKAGE)
        if not PROMETHEUS_MODELS_PACKAGE.is_file():
            missing_tool(f"@kubernetes-models/prometheus-operator cannot be installed: {why}")
    script = """
    import { readFileSync } from "node:fs";
    const base = "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/";
    let failed = 0;
    for (const object of JSON.parse(readFileSync(0, "utf8"))) {
      const { [object.kind]: Model } = await import(base + object.kind);
      try { new Model(object).validate(); }
      catch (error) { failed++; console.log(`${object.kind}/${object.metadata.name}: ${error}`); }
    }
    process.exit(failed ? 1 : 0);
    """
    result = subprocess.run(
        [node, "--input-type=module", "-e", script],
        cwd=PROMETHEUS_MODELS.parent,
        input=json.dumps(monitors),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_object_is_valid_kubernetes(helm: Helm, variant: tuple[str, list[str]]) -> None:
    _, args = variant
    objects = helm.template("--include-crds", *args)
    monitors = [o for o in objects if o["kind"] in MONITORING_KINDS]
    for document in objects:
        if document["kind"] in MONITORING_KINDS:
            continue
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    if monitors:
        validate_monitors(monitors)


def test_the_monitor_check_refuses_a_bad_monitor(helm: Helm) -> None:
    monitor = the(helm.template(*MONITORS, *MONITORING_API), "ServiceMonitor")
    monitor["spec"]["endpoints"][0]["interval"] = "thirty seconds"
    with pytest.raises(AssertionError, match="interval must match pattern"):
        validate_monitors([monitor])


def test_every_object_carries_the_standard_labels(
    helm: Helm, variant: tuple[str, list[str]]
) -> None:
    name, args = variant
    objects = helm.template(*args)
    assert objects
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    for document in objects:
        labels = document["metadata"].get("labels") or {}
        where = f"{document['kind']}/{document['metadata']['name']}"
        assert [label for label in STANDARD_LABELS if label not in labels] == [], where
        assert labels["helm.sh/chart"] == f"troupe-{chart['version']}", where
        assert labels["app.kubernetes.io/name"] == "troupe", where
        assert labels["app.kubernetes.io/instance"] == RELEASE, where
        assert labels["app.kubernetes.io/version"] == chart["appVersion"], where
        assert labels["app.kubernetes.io/managed-by"] == "Helm", where
        if name == "custom":
            assert labels["team"] == "platform", where
    pod_labels = the(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert [label for label in STANDARD_LABELS if label not in pod_labels] == []


def test_the_crds_are_the_generated_ones(helm: Helm) -> None:
    crds = by_kind(helm.template("--include-crds"), "CustomResourceDefinition")
    committed = [yaml.safe_load(p.read_text()) for p in sorted((ROOT / "crds").glob("*.yaml"))]
    key = lambda crd: crd["metadata"]["name"]  # noqa: E731
    assert sorted(crds, key=key) == sorted(committed, key=key)


def test_nothing_runs_as_root_or_unbounded(helm: Helm, variant: tuple[str, list[str]]) -> None:
    _, args = variant
    objects = helm.template(*args)
    pods = [the(objects, "Deployment")["spec"]["template"]["spec"], the(objects, "Pod")["spec"]]
    for pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in pod["containers"]:
            assert container["securityContext"] == {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "runAsNonRoot": True,
                "capabilities": {"drop": ["ALL"]},
            }
            assert {"cpu", "memory"} <= set(container["resources"]["requests"])
            assert "memory" in container["resources"]["limits"]


# --- RBAC: deploy/operator.yaml's, exactly ----------------------------------------------


def test_the_cluster_roles_are_deploy_operator_yaml_s(helm: Helm) -> None:
    objects = helm.template()
    operator = the(objects, "ClusterRole", "troupe-operator")
    assert operator["rules"] == manifest("ClusterRole", "troupe-operator")["rules"]
    for name in ("troupe-view", "troupe-edit"):
        rendered, reference = the(objects, "ClusterRole", name), manifest("ClusterRole", name)
        assert rendered["rules"] == reference["rules"], name
        aggregation = {
            k: v for k, v in reference["metadata"]["labels"].items() if "aggregate-to" in k
        }
        assert subset(aggregation, rendered["metadata"]["labels"]), name
    for role in by_kind(objects, "ClusterRole"):
        assert "*" not in json.dumps(role["rules"]), role  # no wildcard anywhere
    assert len(by_kind(objects, "ClusterRole")) == 3


def test_the_operator_is_bound_to_its_role_as_its_account(helm: Helm, custom_values: Path) -> None:
    for args, prefix in [([], "troupe"), (["--values", str(custom_values)], "acme-troupe")]:
        objects = helm.template(*args)
        account = the(objects, "ServiceAccount")
        role = the(objects, "ClusterRole", f"{prefix}-operator")
        binding = the(objects, "ClusterRoleBinding")
        assert account["metadata"]["name"] == f"{prefix}-operator"
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": role["metadata"]["name"],
        }
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": f"{prefix}-operator", "namespace": NAMESPACE}
        ]
        pod = the(objects, "Deployment")["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == f"{prefix}-operator"


def test_rbac_and_accounts_can_be_left_to_others(helm: Helm, single_values: Path) -> None:
    objects = helm.template("--values", str(single_values))
    kinds = {o["kind"] for o in objects}
    assert kinds.isdisjoint(
        {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "PodDisruptionBudget"}
    )
    assert the(objects, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == (
        "existing"
    )
    result = helm.run("template", RELEASE, str(CHART), "--set", "serviceAccount.create=false")
    assert result.returncode != 0 and "serviceAccount.name" in result.stderr


# --- the operator -----------------------------------------------------------------------


def test_the_operator_runs_two_electing_replicas_like_deploy_operator_yaml(helm: Helm) -> None:
    objects = helm.template()
    deployment = the(objects, "Deployment")
    assert deployment["metadata"]["namespace"] == NAMESPACE
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]
    assert subset(deployment["spec"]["selector"]["matchLabels"], pod["metadata"]["labels"])
    container = operator_container(objects)
    reference = manifest("Deployment", "troupe-operator")["spec"]["template"]["spec"]
    (reference_container,) = reference["containers"]
    assert container["args"] == reference_container["args"] == ["--standalone"]
    assert "livenessProbe" not in container
    env = {variable["name"]: variable for variable in container["env"]}
    for variable in reference_container["env"]:
        if variable["name"] == "TROUPE_AGENT_IMAGE":  # the chart's default image, not e2e's
            continue
        assert env[variable["name"]] == variable, variable["name"]
    assert env["TROUPE_LEASE_NAME"]["value"] == deployment["metadata"]["name"]
    assert pod["spec"]["volumes"] == reference["volumes"]
    assert container["volumeMounts"] == reference_container["volumeMounts"]
    assert container["ports"] == reference_container["ports"]
    assert container["readinessProbe"] == reference_container["readinessProbe"]
    assert (
        pod["spec"]["terminationGracePeriodSeconds"] == reference["terminationGracePeriodSeconds"]
    )
    assert container["resources"] == reference_container["resources"]
    budget = the(objects, "PodDisruptionBudget")
    assert budget["spec"]["maxUnavailable"] == 1
    assert subset(budget["spec"]["selector"]["matchLabels"], pod["metadata"]["labels"])


def test_the_operator_accepts_its_rendered_settings(
    helm: Helm, custom_values: Path, single_values: Path
) -> None:
    defaults = plain_env(operator_container(helm.template()))
    config = OperatorConfig.from_env(defaults)
    assert config.untenanted_namespaces is UntenantedNamespaces.REFUSE
    assert (config.cache_max_entries, config.cache_retention_seconds) == (200, 7 * 86400)
    assert (
        config.agent_image
        == "ghcr.io/troupe-dev/troupe-agent:0.1.0"
        == OperatorConfig().agent_image
    )
    leadership = LeadershipSettings.from_env(defaults)
    assert leadership.enabled and (leadership.namespace, leadership.name) == (
        NAMESPACE,
        "troupe-operator",
    )
    assert metrics_port(defaults) == 8080

    custom = plain_env(operator_container(helm.template("--values", str(custom_values))))
    config = OperatorConfig.from_env(custom)
    assert config.untenanted_namespaces is UntenantedNamespaces.ALLOW
    assert config.agent_image == "registry.example/troupe-agent@sha256:" + "a" * 64
    assert (config.api_server_cidr, config.api_server_ports) == ("172.18.0.2/32", (6443, 443))
    assert (config.workers, config.resync_seconds, config.api_timeout_seconds) == (8, 60, 20)
    assert config.task_events is True
    assert (config.cache_max_entries, config.cache_retention_seconds) == (50, 86400)
    leadership = LeadershipSettings.from_env(custom)
    assert leadership.name == "acme-troupe-operator"
    assert (leadership.election.lease_duration, leadership.election.retry_period) == (30, 4)
    assert metrics_port(custom) == 9090
    assert custom["HTTPS_PROXY"] == "http://proxy.example:3128"
    assert custom["OTEL_EXPORTER_OTLP_ENDPOINT"] == "https://otel.example:4318"

    single = plain_env(operator_container(helm.template("--values", str(single_values))))
    assert LeadershipSettings.from_env(single).enabled is False


def test_the_images_default_to_the_app_version(helm: Helm, custom_values: Path) -> None:
    assert operator_container(helm.template())["image"] == (
        "ghcr.io/troupe-dev/troupe-operator:0.1.0"
    )
    assert operator_container(helm.template("--values", str(custom_values)))["image"] == (
        "registry.example/troupe-operator:1.2.3"
    )


# --- tracing: the standard OTEL_* variables, as the OpenTelemetry SDK reads them ---------

TRACING = [
    *("--set", "tracing.enabled=true"),
    *("--set", "tracing.endpoint=http://otel-collector.observability:4318"),
    *(
        "--set",
        "tracing.sampler=parentbased_traceidratio",
        "--set-string",
        "tracing.samplerArg=0.25",
    ),
    *("--set", r"tracing.resourceAttributes.deployment\.environment=prod"),
]


def test_tracing_is_off_by_default(helm: Helm) -> None:
    env = plain_env(operator_container(helm.template()))
    assert [name for name in env if name.startswith("OTEL_")] == []
    assert otel_config.exporters(otel_config.Signal.TRACES, env) == ()


def test_tracing_sets_what_the_operator_and_the_sdk_read(
    helm: Helm, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = plain_env(operator_container(helm.template(*TRACING)))
    otel = {name: value for name, value in env.items() if name.startswith("OTEL_")}
    known = {*vars(api_variables), *vars(sdk_variables)}
    assert set(otel) <= known, "not a variable of the OpenTelemetry spec"
    assert otel_config.exporters(otel_config.Signal.TRACES, otel) == ("otlp",)
    assert otel_config.child_environment(otel)["OTEL_EXPORTER_OTLP_ENDPOINT"] == (
        "http://otel-collector.observability:4318"
    )
    for name, value in otel.items():
        monkeypatch.setenv(name, value)
    resource = otel_config.resource("unnamed").attributes
    assert resource["service.name"] == "troupe-operator"
    assert (resource["k8s.namespace.name"], resource["k8s.pod.name"]) == (NAMESPACE, "pod-0")
    assert resource["deployment.environment"] == "prod"
    sampler = TracerProvider().sampler.get_description()
    assert sampler.startswith("ParentBased{root:TraceIdRatioBased{0.25}"), sampler


# --- the NetworkPolicy ------------------------------------------------------------------


def test_the_release_s_pods_admit_only_scrapes(
    helm: Helm, custom_values: Path, single_values: Path
) -> None:
    for args, peers in [([], None), (["--values", str(custom_values)], CUSTOM)]:
        objects = helm.template(*args)
        policy = the(objects, "NetworkPolicy")["spec"]
        test_pod = the(objects, "Pod")["metadata"]["labels"]
        operator_pod = the(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
        for labels in (operator_pod, test_pod):
            assert subset(policy["podSelector"]["matchLabels"], labels)
        assert policy["policyTypes"] == ["Ingress"]
        (rule,) = policy["ingress"]
        (port,) = operator_container(objects)["ports"]
        assert rule["ports"] == [{"port": port["name"], "protocol": "TCP"}]
        if peers is None:
            assert "from" not in rule  # anyone may scrape
        else:
            *given, helm_test = rule["from"]
            assert given == peers["networkPolicy"]["metricsFrom"]
            assert subset(helm_test["podSelector"]["matchLabels"], test_pod)
    assert by_kind(helm.template("--values", str(single_values)), "NetworkPolicy") == []


# --- checkov ----------------------------------------------------------------------------


def checkov(helm: Helm, *args: str) -> Object:
    """checkov's JSON report of one framework; the test fails on its findings."""
    result = subprocess.run(
        [str(tool_or_skip("checkov")), "--skip-download", "--output", "json", *args],
        cwd=ROOT,
        env=helm.environment(),  # the helm framework runs `helm template` itself
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode in (0, 1), result.stderr[-2000:]
    report: Object = json.loads(result.stdout)
    failed = [
        f"{c['check_id']} {c['check_name']}: {c['resource']}"
        for c in report["results"]["failed_checks"]
    ]
    assert failed == [], "\n".join(failed)
    assert report["summary"]["passed"] > 100 and report["summary"]["parsing_errors"] == 0
    for skipped in report["results"]["skipped_checks"]:
        reason = skipped["check_result"]["suppress_comment"]
        assert len(reason) > 30 and reason != "No comment provided", skipped["check_id"]
    return report


@pytest.mark.timeout(300)  # checkov takes its time on a loaded machine
def test_checkov_finds_nothing_in_the_rendered_chart(
    helm: Helm, custom_values: Path, single_values: Path, tmp_path: Path
) -> None:
    everything = [*MONITORS, *MONITORING_API, "--set", "prometheusRule.enabled=true"]
    everything += ["--set", "dashboard.enabled=true", *TRACING]
    for name, args in {
        "defaults": [],
        "everything": everything,
        "custom": ["--values", str(custom_values), *MONITORING_API],
        "single": ["--values", str(single_values)],
    }.items():
        result = helm.run("template", RELEASE, str(CHART), "--namespace", NAMESPACE, *args)
        assert result.returncode == 0, result.stderr
        (tmp_path / f"{name}.yaml").write_text(result.stdout)
    report = checkov(helm, "--directory", str(tmp_path), "--framework", "kubernetes")
    skipped = {c["check_id"] for c in report["results"]["skipped_checks"]}
    # Suppressed only while the values leave them open: a digest and a CPU limit close them.
    assert {"CKV_K8S_43", "CKV_K8S_11"} <= skipped
    pinned = [
        *("--set", "image.digest=sha256:" + "b" * 64, "--set", "image.pullPolicy=Always"),
        *("--set", "resources.limits.cpu=1", "--set", "tests.image.repository=python"),
        *("--set", "tests.image.digest=sha256:" + "c" * 64),
    ]
    result = helm.run("template", RELEASE, str(CHART), "--namespace", NAMESPACE, *pinned)
    assert result.returncode == 0, result.stderr
    (tmp_path / "pinned").mkdir()
    (tmp_path / "pinned" / "chart.yaml").write_text(result.stdout)
    report = checkov(helm, "--directory", str(tmp_path / "pinned"), "--framework", "kubernetes")
    skipped = {c["check_id"] for c in report["results"]["skipped_checks"]}
    assert skipped == {"CKV_K8S_8", "CKV_K8S_9", "CKV_K8S_38"}


@pytest.mark.timeout(300)
def test_checkov_finds_nothing_in_the_chart_as_helm_renders_it(helm: Helm) -> None:
    # checkov's helm framework renders the chart itself, always into the namespace
    # `default`, so CKV_K8S_21 ("the default namespace should not be used") fires on it
    # there and nowhere else: the chart puts every object in the release's namespace, and
    # the kubernetes framework above, on the chart rendered into troupe-system, runs it.
    checkov(helm, "--directory", str(CHART), "--framework", "helm", "--skip-check", "CKV_K8S_21")


# --- metrics: the Service and the monitors ----------------------------------------------


def test_the_metrics_service_reaches_every_replica(helm: Helm, custom_values: Path) -> None:
    for args, port, target in [([], 8080, 8080), (["--values", str(custom_values)], 9091, 9090)]:
        objects = helm.template(*args)
        service = the(objects, "Service")
        pod = the(objects, "Deployment")["spec"]["template"]
        assert subset(service["spec"]["selector"], pod["metadata"]["labels"])
        (service_port,) = service["spec"]["ports"]
        assert (service_port["name"], service_port["port"]) == ("metrics", port)
        (container_port,) = operator_container(objects)["ports"]
        assert container_port == {"name": "metrics", "containerPort": target, "protocol": "TCP"}
        assert service_port["targetPort"] == container_port["name"]
        assert plain_env(operator_container(objects))["TROUPE_METRICS_PORT"] == str(target)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], set()),
        (MONITORING_API, set()),
        (MONITORS, set()),  # enabled, but the cluster has no Prometheus Operator
        ([*MONITORS, *MONITORING_API], {"ServiceMonitor", "PodMonitor"}),
        (["--set", "podMonitor.enabled=true", *MONITORING_API], {"PodMonitor"}),
    ],
    ids=["off", "api-only", "toggle-only", "both", "pod-monitor-only"],
)
def test_monitors_need_the_api_and_the_toggle(
    helm: Helm, args: list[str], expected: set[str]
) -> None:
    kinds = {o["kind"] for o in helm.template(*args)}
    assert kinds & set(MONITORING_KINDS) == expected


def test_monitors_select_what_they_scrape_and_carry_their_labels(helm: Helm) -> None:
    objects = helm.template(*MONITORS, *MONITORING_API)
    service_monitor, pod_monitor = the(objects, "ServiceMonitor"), the(objects, "PodMonitor")
    for monitor in (service_monitor, pod_monitor):
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        assert monitor["metadata"]["namespace"] == NAMESPACE

    service = the(objects, "Service")
    assert subset(service_monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    assert service_monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = service_monitor["spec"]["endpoints"]
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"

    # The labels and port the Agent controller gives agent pods.
    agent = agent_children.AgentRef("research-dev", "writer", "uid-1")
    spec = AgentSpec.model_validate({"role": "executor", "replicas": 2})
    settings = agent_children.ServeSettings("troupe-agent:test", ("troupe-agent",))
    template = agent_children.deployment(agent, spec, settings)["spec"]["template"]
    assert subset(pod_monitor["spec"]["selector"]["matchLabels"], template["metadata"]["labels"])
    (container,) = template["spec"]["containers"]
    (pod_endpoint,) = pod_monitor["spec"]["podMetricsEndpoints"]
    assert pod_endpoint["port"] in {port["name"] for port in container["ports"]}
    assert pod_endpoint["path"] == "/metrics"
    assert pod_monitor["spec"]["namespaceSelector"] == {"any": True}
    # ...and nothing else: not the operator's own pods.
    operator_pod = the(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert not subset(pod_monitor["spec"]["selector"]["matchLabels"], operator_pod)


# --- helm test, NOTES.txt ---------------------------------------------------------------


def run_test_pod(pod: Object, url: str, wait: str) -> subprocess.CompletedProcess[str]:
    """The hook's container command, here: its script, its environment, another URL."""
    (container,) = pod["spec"]["containers"]
    command = container["command"]
    assert command[:2] == ["python", "-c"]
    env = {v["name"]: v["value"] for v in container["env"]}
    env |= {"METRICS_URL": url, "WAIT_SECONDS": wait, "PATH": os.environ.get("PATH", "")}
    return subprocess.run(
        [sys.executable, *command[1:]],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_the_helm_test_pod_checks_the_operator_serves_metrics(helm: Helm) -> None:
    objects = helm.template()
    pod = the(objects, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["spec"]["automountServiceAccountToken"] is False
    (container,) = pod["spec"]["containers"]
    assert container["image"] == operator_container(objects)["image"]
    service = the(objects, "Service")
    url = {v["name"]: v["value"] for v in container["env"]}["METRICS_URL"]
    assert url == (
        f"http://{service['metadata']['name']}.{NAMESPACE}.svc:"
        f"{service['spec']['ports'][0]['port']}/metrics"
    )

    # The operator's own gauge, served by prometheus-client as the operator serves it.
    leading = CollectorRegistry()
    master_status(leading).labels(name="troupe-operator").set(1)
    starting = CollectorRegistry()  # serving, but not yet campaigning
    servers = [start_http_server(0, "127.0.0.1", registry=r) for r in (leading, starting)]
    try:
        (up, _), (early, _) = servers
        ready = run_test_pod(pod, f"http://127.0.0.1:{up.server_port}/metrics", "10")
        assert ready.returncode == 0, ready.stderr
        assert 'leader_election_master_status{name="troupe-operator"}' in ready.stdout
        not_ready = run_test_pod(pod, f"http://127.0.0.1:{early.server_port}/metrics", "0")
        assert not_ready.returncode == 1
        assert "not reachable or not ready" in not_ready.stderr
    finally:
        for server, thread in servers:
            server.shutdown()
            server.server_close()
            thread.join(5)
    down = run_test_pod(pod, f"http://127.0.0.1:{up.server_port}/metrics", "0")
    assert down.returncode == 1 and "not reachable or not ready" in down.stderr


def test_notes_say_what_to_run_next(helm: Helm) -> None:
    notes = {}
    for mode in ("Refuse", "Allow"):
        result = helm.run(
            "install",
            RELEASE,
            str(CHART),
            "--namespace",
            NAMESPACE,
            "--dry-run=client",
            "--set",
            f"operator.untenantedNamespaces={mode}",
            "--set",
            "serviceMonitor.enabled=true",
        )
        assert result.returncode == 0, result.stderr
        notes[mode] = result.stdout.split("NOTES:", 1)[1]
    for text in notes.values():
        assert "kubectl -n troupe-system rollout status deployment/troupe-operator" in text
        assert "helm test troupe -n troupe-system" in text
        assert "examples/serial-pipeline.yaml" in text
        assert "does not serve\n   monitoring.coreos.com/v1" in text
        assert "4. Traces: off; tracing.enabled=true" in text
    assert "kubectl apply -f examples/tenant.yaml" in notes["Refuse"]
    assert "kubectl get workflows -n research-dev -w" in notes["Refuse"]
    assert "kubectl get workflows -w" in notes["Allow"]
    assert "tenant.yaml" not in notes["Allow"]


# --- README.md's cluster section, against the chart -------------------------------------


def readme_cluster_section() -> str:
    text = (ROOT / "README.md").read_text()
    return text.split("\n## On a cluster\n", 1)[1].split("\n## ", 1)[0]


def test_the_readme_s_commands_fit_the_chart(helm: Helm) -> None:
    block = readme_cluster_section().split("```sh\n", 1)[1].split("```", 1)[0]
    commands = [
        shlex.split(line, comments=True) for line in block.replace("\\\n", " ").splitlines()
    ]
    (install,) = [words for words in commands if words[:2] == ["helm", "install"]]
    assert install[2:4] == [RELEASE, "charts/troupe"]
    settings = [w.replace("REGISTRY", "registry.example") for w in install[4:]]
    objects = helm.template(*(w for w in settings if w != "--create-namespace"))
    deployment = the(objects, "Deployment")
    rollout = f"deployment/{deployment['metadata']['name']}"
    assert ["kubectl", "-n", NAMESPACE, "rollout", "status", rollout] in commands
    assert ["helm", "test", RELEASE, "-n", NAMESPACE] in commands
    container = operator_container(objects)
    assert container["image"] == "registry.example/troupe-operator:0.1.0"
    assert plain_env(container)["TROUPE_AGENT_IMAGE"] == "registry.example/troupe-agent:0.1.0"


def test_the_readme_names_only_values_the_chart_has() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    rows = [line for line in readme_cluster_section().splitlines() if line.startswith("| `")]
    assert len(rows) > 5
    for row in rows:
        previous = ""
        for name in re.findall(r"`([^`]+)`", row.split("|")[1]):
            if name.startswith("."):  # `tracing.enabled`, `.endpoint`
                name = previous.rsplit(".", 1)[0] + name
            node = values
            for key in name.removesuffix(".*").split("."):
                assert isinstance(node, dict) and key in node, f"README names {name}"
                node = node[key]
            previous = name
