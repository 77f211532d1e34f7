"""Custom resources that break their CRD schema get kube-apiserver's 422, cause by cause."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes.client import ApiClient, ApiException, CustomObjectsApi

from tests.support.emulator import EmulatedCluster
from tests.support.samples import crd

PROBE_SPEC = {
    "type": "object",
    "required": ["size"],
    "properties": {
        "size": {"type": "integer", "minimum": 0, "maximum": 10},
        "ratio": {"type": "number", "maximum": 1.5},
        "name": {"type": "string", "minLength": 1, "maxLength": 5, "pattern": "^[a-z]+$"},
        "mode": {"type": "string", "enum": ["fast", "slow"]},
        "steps": {"type": "array", "minItems": 1, "maxItems": 3, "items": {"type": "string"}},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "cpu": {
            "x-kubernetes-int-or-string": True,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
        },
        "network": {"type": "string", "format": "cidr"},
        "host": {"type": "string", "format": "hostname"},
        "since": {"type": "string", "format": "date-time"},
        "id": {"type": "string", "format": "uuid"},
        "width": {"type": "integer", "format": "int32"},
    },
}


@pytest.fixture
def probes(emulator: EmulatedCluster, kube_api: ApiClient) -> CustomObjectsApi:
    emulator.load_crds(crd("Probe", PROBE_SPEC))
    return CustomObjectsApi(kube_api)


def _refusal(probes: CustomObjectsApi, **spec: Any) -> dict[str, Any]:
    body = {"apiVersion": "example.com/v1", "kind": "Probe", "metadata": {"name": "p"}}
    with pytest.raises(ApiException) as refused:
        probes.create_namespaced_custom_object(
            "example.com", "v1", "default", "probes", {**body, "spec": spec}
        )
    assert refused.value.status == 422
    status: dict[str, Any] = json.loads(refused.value.body or "")
    return status


def _type(field: str, wanted: str, found: str) -> str:
    return f'{field}: Invalid value: "{found}": {field} in body must be of type {wanted}: "{found}"'


@pytest.mark.parametrize(
    ("spec", "causes"),
    [
        ({"size": "3"}, [_type("spec.size", "integer", "string")]),
        ({"size": None}, ["spec.size: Required value"]),  # a non-nullable null is dropped
        (
            {"size": -1},
            [
                "spec.size: Invalid value: -1: spec.size in body should be greater than or"
                " equal to 0"
            ],
        ),
        (
            {"size": 11},
            ["spec.size: Invalid value: 11: spec.size in body should be less than or equal to 10"],
        ),
        (
            {"size": 1, "ratio": 2.5},
            [
                "spec.ratio: Invalid value: 2.5: spec.ratio in body should be less than or equal"
                " to 1.5"
            ],
        ),
        ({"size": 1, "name": "toolong"}, ["spec.name: Too long: may not be more than 5 bytes"]),
        (
            {"size": 1, "name": ""},
            ['spec.name: Invalid value: "": spec.name in body should be at least 1 chars long'],
        ),
        (
            {"size": 1, "name": "AB"},
            ["spec.name: Invalid value: \"AB\": spec.name in body should match '^[a-z]+$'"],
        ),
        (
            {"size": 1, "mode": "x"},
            ['spec.mode: Unsupported value: "x": supported values: "fast", "slow"'],
        ),
        (
            {"size": 1, "steps": []},
            ["spec.steps: Invalid value: 0: spec.steps in body should have at least 1 items"],
        ),
        (
            {"size": 1, "steps": ["a", 2, "c", "d"]},
            [
                _type("spec.steps[1]", "string", "integer"),
                "spec.steps: Too many: 4: must have at most 3 items",
            ],
        ),
        ({"size": 1, "labels": {"team": 7}}, [_type("spec.labels.team", "string", "integer")]),
        (
            {"size": 1, "cpu": True},
            [
                _type("spec.cpu", "integer,string", "boolean"),
                '<nil>: Invalid value: "": "spec.cpu" must validate at least one schema (anyOf)',
                _type("spec.cpu", "integer", "boolean"),
            ],
        ),
    ],
)
def test_schema_rules_are_refused_in_the_api_servers_words(
    probes: CustomObjectsApi, spec: dict[str, Any], causes: list[str]
) -> None:
    status = _refusal(probes, **spec)
    listed = causes[0] if len(causes) == 1 else f"[{', '.join(causes)}]"
    assert status["message"] == f'Probe.example.com "p" is invalid: {listed}'
    assert [f"{c['field']}: {c['message']}" for c in status["details"]["causes"]] == causes


@pytest.mark.parametrize(
    ("field", "valid", "invalid"),
    [
        ("network", ["10.0.0.0/8", "010.1.2.3/32", "fd00::/64"], ["not-a-cidr", "10.0.0.0/33"]),
        ("host", ["example.com", "localhost", "bücher.de"], ["-bad-", "a..b", "under_score"]),
        (
            "since",
            ["2024-02-29T10:00:00Z", "2024-01-01t00:00:00.5+01:00"],
            ["2023-02-29T10:00:00Z"],
        ),
        ("id", ["123e4567-e89b-12d3-a456-426614174000"], ["123e4567"]),
        ("width", [], []),  # int32 is a format kube-apiserver drops: nothing is checked
    ],
)
def test_formats_are_checked_as_kube_openapi_checks_them(
    probes: CustomObjectsApi, field: str, valid: list[str], invalid: list[str]
) -> None:
    for index, value in enumerate(valid):
        body = {"metadata": {"name": f"ok{index}"}, "spec": {"size": 1, field: value}}
        probes.create_namespaced_custom_object("example.com", "v1", "default", "probes", body)
    for value in invalid:
        wanted = PROBE_SPEC["properties"][field]["format"]  # type: ignore[index]
        assert _refusal(probes, size=1, **{field: value})["details"]["causes"] == [
            {
                "reason": "FieldValueTypeInvalid",
                "field": f"spec.{field}",
                "message": f'Invalid value: "{value}": spec.{field} in body must be of type'
                f' {wanted}: "{value}"',
            }
        ]


def test_a_thousand_and_one_tasks_are_refused_in_one_short_line(kube_api: ApiClient) -> None:
    task = {"name": "t", "agent": "a", "prompt": "p"}
    workflow = {
        "apiVersion": "troupe.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "w"},
        "spec": {"tasks": [dict(task, name=f"t{index}") for index in range(1001)]},
    }
    with pytest.raises(ApiException) as refused:
        CustomObjectsApi(kube_api).create_namespaced_custom_object(
            "troupe.dev", "v1alpha1", "default", "workflows", workflow
        )
    assert json.loads(refused.value.body or "")["message"] == (
        'Workflow.troupe.dev "w" is invalid: spec.tasks: Too many: 1001: must have at most 1000'
        " items"
    )


def test_status_writes_are_checked_against_the_status_schema(
    emulator: EmulatedCluster, kube_api: ApiClient
) -> None:
    status = {"type": "object", "properties": {"phase": {"type": "string"}}}
    emulator.load_crds(crd("Gauge", {"type": "object"}, status=status, subresources={"status": {}}))
    gauges = CustomObjectsApi(kube_api)
    gauges.create_namespaced_custom_object(
        "example.com", "v1", "default", "gauges", {"metadata": {"name": "g"}, "spec": {}}
    )
    with pytest.raises(ApiException) as refused:
        gauges.patch_namespaced_custom_object_status(
            "example.com", "v1", "default", "gauges", "g", {"status": {"phase": 3}}
        )
    assert json.loads(refused.value.body or "")["message"] == (
        'Gauge.example.com "g" is invalid: status.phase: Invalid value: "integer": phase in body'
        ' must be of type string: "integer"'
    )
