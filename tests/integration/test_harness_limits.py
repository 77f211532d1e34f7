"""The emulator refuses what kube-apiserver refuses: names, labels, keys, sizes, nesting."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest
from kubernetes.client import (
    ApiClient,
    ApiException,
    CoreV1Api,
    RbacAuthorizationV1Api,
    V1ConfigMap,
    V1ObjectMeta,
    V1Secret,
)

from tests.support.emulator import EmulatedCluster
from tests.support.samples import WIDGET_CRD, widget

MIB = 1024 * 1024
NAME_RULE = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or"
    " '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex"
    r" used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
LABEL_RULE = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or"
    " '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or"
    " 'my_value',  or '12345', regex used for validation is"
    " '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)
KEY_RULE = (
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g."
    " 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is"
    " '[-._a-zA-Z0-9]+')"
)


def _config_map(name: str = "cm", **fields: Any) -> dict[str, Any]:
    metadata = {"name": name, **fields.pop("metadata", {})}
    return {"metadata": metadata, **fields}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            _config_map(data={"big": "x" * (MIB + 1)}),
            'ConfigMap "cm" is invalid: []: Too long: may not be more than 1048576 bytes',
        ),
        (
            _config_map(data={"a": "x" * MIB}, binaryData={"b": base64.b64encode(b"x").decode()}),
            'ConfigMap "cm" is invalid: []: Too long: may not be more than 1048576 bytes',
        ),
        (
            _config_map(metadata={"annotations": {"note": "x" * (256 * 1024)}}),
            'ConfigMap "cm" is invalid: metadata.annotations: Too long: may not be more than 262144'
            " bytes",
        ),
        (
            _config_map(metadata={"labels": {"task": "x" * 64}}),
            f'ConfigMap "cm" is invalid: metadata.labels: Invalid value: "{"x" * 64}": must be no'
            " more than 63 characters",
        ),
        (
            _config_map(metadata={"labels": {"task": "two words"}}),
            f'ConfigMap "cm" is invalid: metadata.labels: Invalid value: "two words": {LABEL_RULE}',
        ),
        (
            _config_map("Report_1"),
            'ConfigMap "Report_1" is invalid: metadata.name: Invalid value: "Report_1": '
            + NAME_RULE,
        ),
    ],
)
def test_config_maps_beyond_the_limits_are_invalid(
    kube_api: ApiClient, body: dict[str, Any], message: str
) -> None:
    with pytest.raises(ApiException) as refused:
        CoreV1Api(kube_api).create_namespaced_config_map("default", body)
    status = json.loads(refused.value.body)
    assert (refused.value.status, status["reason"], status["message"]) == (422, "Invalid", message)


def test_data_up_to_one_mebibyte_is_stored(kube_api: ApiClient) -> None:
    core = CoreV1Api(kube_api)
    core.create_namespaced_config_map("default", _config_map(data={"a": "x" * MIB}))
    secret = {"metadata": {"name": "s"}, "data": {"a": base64.b64encode(b"x" * MIB).decode()}}
    core.create_namespaced_secret("default", secret)
    secret["metadata"]["name"] = "t"
    secret["data"]["b"] = "eA=="
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_secret("default", secret)
    assert json.loads(refused.value.body)["message"] == (
        'Secret "t" is invalid: data: Too long: may not be more than 1048576 bytes'
    )


@pytest.mark.parametrize(
    ("create", "name", "problem"),
    [
        ("namespace", "a.b", "must not contain dots"),
        ("namespace", "x" * 64, "must be no more than 63 characters"),
        ("service", "1st", "a DNS-1035 label must consist of lower case alphanumeric"),
        ("role", "troupe/operator", "may not contain '/'"),
    ],
)
def test_names_follow_each_kinds_rule(
    kube_api: ApiClient, create: str, name: str, problem: str
) -> None:
    core, rbac = CoreV1Api(kube_api), RbacAuthorizationV1Api(kube_api)
    calls = {
        "namespace": lambda body: core.create_namespace(body),
        "service": lambda body: core.create_namespaced_service("default", body),
        "role": lambda body: rbac.create_namespaced_role("default", body),
    }
    with pytest.raises(ApiException) as refused:
        calls[create]({"metadata": {"name": name}})
    assert refused.value.status == 422
    assert problem in json.loads(refused.value.body)["message"]


def test_rbac_names_may_hold_colons(kube_api: ApiClient) -> None:
    role = {"metadata": {"name": "troupe:operator"}, "rules": []}
    assert RbacAuthorizationV1Api(kube_api).create_cluster_role(role).metadata.name == (
        "troupe:operator"
    )


def test_request_bodies_over_three_mebibytes_are_too_large(emulator: EmulatedCluster) -> None:
    body = json.dumps(_config_map(data={"big": "x" * (3 * MIB)}))
    response = httpx.post(
        f"{emulator.url}/api/v1/namespaces/default/configmaps",
        content=body,
        headers={"Content-Type": "application/json"},
    )
    assert (response.status_code, response.json()["message"]) == (
        413,
        "Request entity too large: limit is 3145728",
    )


@pytest.mark.parametrize(
    ("kind", "body", "causes"),
    [
        ("configmaps", {"data": {"a b": "1"}}, [f'data[a b]: Invalid value: "a b": {KEY_RULE}']),
        (
            "configmaps",
            {"binaryData": {"..x": "eA=="}},
            ["binaryData[..x]: Invalid value: \"..x\": must not start with '..'"],
        ),
        (
            "configmaps",
            {"data": {"k": "1"}, "binaryData": {"k": "eA=="}},
            ['data[k]: Invalid value: "k": duplicate of key present in binaryData'],
        ),
        (
            "configmaps",
            {"data": {"k" * 254: "1"}},
            [
                f'data[{"k" * 254}]: Invalid value: "{"k" * 254}": must be no more than 253'
                " characters"
            ],
        ),
        ("secrets", {"data": {"": "eA=="}}, [f'data[]: Invalid value: "": {KEY_RULE}']),
        ("secrets", {"stringData": {"a/b": "x"}}, [f'data[a/b]: Invalid value: "a/b": {KEY_RULE}']),
    ],
)
def test_config_map_and_secret_keys_are_config_keys(
    emulator: EmulatedCluster, kind: str, body: dict[str, Any], causes: list[str]
) -> None:
    response = httpx.post(
        f"{emulator.url}/api/v1/namespaces/default/{kind}",
        json={"metadata": {"name": "x"}, **body},
    )
    assert response.status_code == 422
    assert [f"{c['field']}: {c['message']}" for c in response.json()["details"]["causes"]] == causes


def test_secret_string_data_merges_into_data(kube_api: ApiClient) -> None:
    secret = V1Secret(
        metadata=V1ObjectMeta(name="s"),
        data={"a": "MQ==", "b": "MQ=="},
        string_data={"b": "2"},
    )
    stored = CoreV1Api(kube_api).create_namespaced_secret("default", secret)
    assert (stored.data, stored.string_data) == ({"a": "MQ==", "b": "Mg=="}, None)


def test_a_two_mebibyte_body_reaches_validation(kube_api: ApiClient) -> None:
    config_map = V1ConfigMap(metadata=V1ObjectMeta(name="big"), data={"big": "x" * (2 * MIB)})
    with pytest.raises(ApiException) as refused:
        CoreV1Api(kube_api).create_namespaced_config_map("default", config_map)
    assert (refused.value.status, refused.value.reason) == (422, "Unprocessable Entity")
    assert json.loads(refused.value.body or "")["reason"] == "Invalid"


@pytest.mark.parametrize(
    ("size", "message"),
    [
        (int(1.6 * MIB), "etcdserver: request is too large"),
        (
            int(2.5 * MIB),
            "rpc error: code = ResourceExhausted desc = trying to send message larger than max",
        ),
    ],
)
def test_custom_resources_over_etcds_limits_are_a_500(
    emulator: EmulatedCluster, size: int, message: str
) -> None:
    emulator.load_crds(WIDGET_CRD)
    response = httpx.post(
        f"{emulator.url}/apis/example.com/v1/namespaces/default/widgets",
        json=widget("big", extra={"blob": "x" * size}),
    )
    status = response.json()
    assert (response.status_code, status["message"].split(" (")[0], "reason" in status) == (
        500,
        message,
        False,
    )
    small = httpx.post(
        f"{emulator.url}/apis/example.com/v1/namespaces/default/widgets",
        json=widget("small", extra={"blob": "x" * MIB}),
    )
    assert small.status_code == 201


@pytest.mark.parametrize(
    ("depth", "status", "message"),
    [
        (
            10_001,
            400,
            "the object provided is unrecognized (must be of type ConfigMap): couldn't get"
            " version/kind; json parse error: invalid character '[' exceeded max depth"
            ' ({"metadata": {"name": "deep"}, ...)',
        ),
        (
            1_000,
            400,
            "the emulator cannot handle JSON nested deeper than 300 levels (kube-apiserver accepts"
            " up to 10000)",
        ),
        (300, 201, None),
    ],
)
def test_deep_bodies_are_a_400_never_a_500(
    emulator: EmulatedCluster, depth: int, status: int, message: str | None
) -> None:
    nested = "[" * (depth - 1) + "]" * (depth - 1)  # inside the object: one level
    body = '{"metadata": {"name": "deep"}, "data": {}, "extra": ' + nested + "}"
    response = httpx.post(
        f"{emulator.url}/api/v1/namespaces/default/configmaps",
        content=body,
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == status
    if message is not None:
        assert response.json()["message"] == message
    assert emulator.handler.errors == []
