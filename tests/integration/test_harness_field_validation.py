"""fieldValidation: Strict refuses unknown and duplicate fields, Warn (the default) warns."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from tests.support.emulator import EmulatedCluster
from tests.support.samples import WIDGET_CRD

WIDGETS_URL = "/apis/example.com/v1/namespaces/default/widgets"
BOGUS = '{"metadata": {"name": "w"}, "spec": {"size": 1, "bogus": 1, "other": 2}}'
REPEATED = '{"metadata": {"name": "w"}, "spec": {"size": 1, "size": 2}}'
STRICT_CREATE = (
    'Widget in version "v1" cannot be handled as a Widget: strict decoding error: unknown field'
    ' "spec.bogus", unknown field "spec.other"'
)
UNKNOWN = ['299 - "unknown field \\"spec.bogus\\""', '299 - "unknown field \\"spec.other\\""']

Send = Callable[..., httpx.Response]


@pytest.fixture
def send(emulator: EmulatedCluster) -> Send:
    emulator.load_crds(WIDGET_CRD)

    def send(
        method: str, path: str, body: str, content_type: str = "application/json", **query: str
    ) -> httpx.Response:
        headers = {"Content-Type": content_type}
        return httpx.request(
            method, emulator.url + path, content=body, params=query, headers=headers
        )

    return send


@pytest.mark.parametrize(
    ("query", "status", "message", "warnings"),
    [
        ({"fieldValidation": "Strict"}, 400, STRICT_CREATE, []),
        ({"fieldValidation": "Warn"}, 201, None, UNKNOWN),
        ({}, 201, None, UNKNOWN),  # Warn is the default
        ({"fieldValidation": "Ignore"}, 201, None, []),
        (
            {"fieldValidation": "Bogus"},
            422,
            'CreateOptions.meta.k8s.io "" is invalid: fieldValidation: Unsupported value: "Bogus":'
            ' supported values: "", "Ignore", "Strict", "Warn"',
            [],
        ),
    ],
)
def test_create_with_unknown_fields(
    send: Send, query: dict[str, str], status: int, message: str | None, warnings: list[str]
) -> None:
    response = send("POST", WIDGETS_URL, BOGUS, **query)
    assert (response.status_code, response.headers.get_list("Warning")) == (status, warnings)
    if message is not None:
        assert response.json()["message"] == message
    else:
        assert response.json()["spec"] == {"size": 1, "color": "blue"}  # pruned, defaulted


@pytest.mark.parametrize(
    ("directive", "status", "warnings"),
    [("Strict", 400, []), ("Warn", 201, ['299 - "duplicate field \\"spec.size\\""'])],
)
def test_duplicate_fields(send: Send, directive: str, status: int, warnings: list[str]) -> None:
    response = send("POST", WIDGETS_URL, REPEATED, fieldValidation=directive)
    assert (response.status_code, response.headers.get_list("Warning")) == (status, warnings)
    if status == 400:
        assert response.json()["message"].endswith(
            'strict decoding error: duplicate field "spec.size"'
        )
    else:
        assert response.json()["spec"]["size"] == 2  # the last one wins


def test_strict_update_and_patch(send: Send) -> None:
    send("POST", WIDGETS_URL, '{"metadata": {"name": "w"}, "spec": {"size": 1}}')
    replaced = send("PUT", f"{WIDGETS_URL}/w", BOGUS, fieldValidation="Strict")
    assert (replaced.status_code, replaced.json()["message"]) == (400, STRICT_CREATE)
    patched = send(
        "PATCH",
        f"{WIDGETS_URL}/w",
        '{"spec": {"bogus": 1}}',
        "application/merge-patch+json",
        fieldValidation="Strict",
    )
    status = patched.json()
    assert (patched.status_code, status["reason"]) == (422, "Invalid")
    assert status["message"].startswith(' "" is invalid: patch: Invalid value: "{\\"apiVersion\\"')
    assert status["message"].endswith('": strict decoding error: unknown field "spec.bogus"')
    warned = send(
        "PATCH", f"{WIDGETS_URL}/w", '{"spec": {"bogus": 1}}', "application/merge-patch+json"
    )
    assert warned.headers.get_list("Warning") == ['299 - "unknown field \\"spec.bogus\\""']


def test_unknown_metadata_fields_of_any_kind(send: Send) -> None:
    body = json.dumps({"metadata": {"name": "c", "bogus": 1}, "data": {"a": "b"}})
    url = "/api/v1/namespaces/default/configmaps"
    refused = send("POST", url, body, fieldValidation="Strict")
    assert refused.json()["message"] == (
        'ConfigMap in version "v1" cannot be handled as a ConfigMap: strict decoding error:'
        ' unknown field "metadata.bogus"'
    )
    stored = send("POST", url, body).json()
    assert "bogus" not in stored["metadata"]


def test_warnings_are_capped_as_the_api_server_caps_them(send: Send) -> None:
    spec = {"size": 1, **{f"field{index:03}{'x' * 300}": 1 for index in range(20)}}
    response = send("POST", WIDGETS_URL, json.dumps({"metadata": {"name": "w"}, "spec": spec}))
    warnings = response.headers.get_list("Warning")
    # 329 characters each: 13 pass 4096, so all are cut to 256, and added until 4096 is reached
    assert len(warnings) == 16
    start = 'unknown field "spec.field000'
    assert warnings[0] == '299 - "unknown field \\"spec.field000' + "x" * (256 - len(start)) + '"'
