"""kubectl 1.32 works against the emulator: discovery, tables with printer columns, apply
with server-side field validation (kubectl's default), `kind: List`, explain."""

from __future__ import annotations

import pathlib

import yaml
from kubernetes.client import ApiClient, CustomObjectsApi

from tests.support.emulator import EmulatedCluster
from tests.support.kubectl import kubectl, kubectl_refused
from tests.support.samples import WIDGET_CRD

MANIFESTS = """
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: default}
data: {level: "1"}
---
apiVersion: example.com/v1
kind: Widget
metadata: {name: gadget, namespace: default}
spec: {size: 5}
"""


def _rows(output: str) -> list[list[str]]:
    return [line.split() for line in output.strip().splitlines()]


def test_get_namespaces(kubeconfig: pathlib.Path) -> None:
    rows = _rows(kubectl(kubeconfig, "get", "namespaces"))
    assert [row[0] for row in rows] == ["NAME", "default"]


def test_get_workflows_prints_the_crd_printer_columns(
    kubeconfig: pathlib.Path, kube_api: ApiClient
) -> None:
    workflows = CustomObjectsApi(kube_api)
    workflow = {
        "apiVersion": "troupe.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "report"},
        "spec": {"tasks": [{"name": "research", "agent": "researcher", "prompt": "look it up"}]},
    }
    workflows.create_namespaced_custom_object(
        "troupe.dev", "v1alpha1", "default", "workflows", workflow
    )
    status = {"status": {"phase": "Running", "progress": "1/2", "usage": {"totalTokens": 42}}}
    workflows.patch_namespaced_custom_object_status(
        "troupe.dev", "v1alpha1", "default", "workflows", "report", status
    )
    rows = _rows(kubectl(kubeconfig, "get", "workflows"))
    assert rows[0] == ["NAME", "PHASE", "PROGRESS", "TOKENS", "AGE", "DURATION"]
    assert rows[1][:4] == ["report", "Running", "1/2", "42"]
    assert _rows(kubectl(kubeconfig, "get", "troupe"))[1][0] == "workflow.troupe.dev/report"


def test_apply_get_yaml_and_delete(kubeconfig: pathlib.Path, emulator: EmulatedCluster) -> None:
    emulator.load_crds(WIDGET_CRD)
    applied = kubectl(kubeconfig, "apply", "-f", "-", stdin=MANIFESTS)
    assert applied.split("\n")[:2] == [
        "configmap/settings created",
        "widget.example.com/gadget created",
    ]
    changed = MANIFESTS.replace('level: "1"', 'level: "2"').replace("size: 5", "size: 6")
    reapplied = kubectl(kubeconfig, "apply", "-f", "-", stdin=changed)
    assert (
        "configmap/settings configured" in reapplied
        and "widget.example.com/gadget configured" in reapplied
    )
    settings = yaml.safe_load(kubectl(kubeconfig, "get", "configmap", "settings", "-o", "yaml"))
    assert settings["data"] == {"level": "2"}
    assert _rows(kubectl(kubeconfig, "get", "wd"))[1][:2] == ["gadget", "6"]
    kubectl(kubeconfig, "label", "widget", "gadget", "tier=gold")
    assert _rows(kubectl(kubeconfig, "get", "widgets", "-l", "tier=gold", "-o", "name")) == [
        ["widget.example.com/gadget"]
    ]
    kubectl(kubeconfig, "delete", "-f", "-", stdin=MANIFESTS)
    assert kubectl(kubeconfig, "get", "widgets,configmaps", "-o", "name") == ""


def _workflow(name: str, **spec: object) -> dict[str, object]:
    task = {"name": "research", "agent": "researcher", "prompt": "look it up"}
    return {
        "apiVersion": "troupe.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": name},
        "spec": {"tasks": [task], **spec},
    }


def test_apply_leaves_field_validation_to_the_server(
    kubeconfig: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    bogus = tmp_path / "bogus.yaml"
    bogus.write_text(yaml.safe_dump(_workflow("report", bogus=1)))
    assert kubectl_refused(kubeconfig, "apply", "-f", str(bogus)).strip() == (
        f'Error from server (BadRequest): error when creating "{bogus}": Workflow in version'
        ' "v1alpha1" cannot be handled as a Workflow: strict decoding error: unknown field'
        ' "spec.bogus"'
    )
    warned = kubectl(kubeconfig, "apply", "--validate=warn", "-f", str(bogus))
    assert warned.strip() == "workflow.troupe.dev/report created"
    stored = yaml.safe_load(kubectl(kubeconfig, "get", "workflow", "report", "-o", "yaml"))
    assert "bogus" not in stored["spec"]


def test_apply_a_list_of_workflows(kubeconfig: pathlib.Path) -> None:
    listed = {"apiVersion": "v1", "kind": "List", "items": [_workflow("one"), _workflow("two")]}
    applied = kubectl(kubeconfig, "apply", "-f", "-", stdin=yaml.safe_dump(listed))
    assert applied.split() == [
        "workflow.troupe.dev/one",
        "created",
        "workflow.troupe.dev/two",
        "created",
    ]
    assert "KIND:       Workflow" in kubectl(kubeconfig, "explain", "workflows.spec.tasks")
