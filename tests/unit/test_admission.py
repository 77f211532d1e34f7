"""One verdict: the CRD schema and the models agree; documents are read as kubectl reads them."""

from __future__ import annotations

import copy
import itertools
import json
from typing import Any

import pytest
from pydantic import ValidationError

from tests.corpus.adversarial import ENTRIES, agent, tenant, workflow
from troupe_operator.admission import object_problems, served_kind, without_nulls
from troupe_operator.documents import DocumentError, parse_documents

VALUES: list[Any] = [
    "3",
    3,
    -1,
    0,
    70_000,
    2.5,
    True,
    "yes",
    None,
    [],
    {},
    "",
    "   ",
    "x" * 300,
    "Bad_Name",
    "10.0.0.0/8",
    "not-a-cidr",
    "-5Gi",
    "500m",
    ["a", "b"],
    {"a": "b"},
    [{"a": 1}],
]
DOCUMENTS = {"Workflow": workflow(), "Agent": agent(), "Tenant": tenant(namespaces=["a"])}
FIELDS: list[tuple[str, tuple[str, ...]]] = [
    ("Workflow", ("parallelism",)),
    ("Workflow", ("failFast",)),
    ("Workflow", ("timeoutSeconds",)),
    ("Workflow", ("inputs",)),
    ("Workflow", ("inputs", "topic")),
    ("Workflow", ("tasks",)),
    ("Workflow", ("workflowTemplateRef",)),
    ("Workflow", ("workflowTemplateRef", "name")),
    ("Workflow", ("inputsFrom",)),
    ("Workflow", ("task", "name")),
    ("Workflow", ("task", "agent")),
    ("Workflow", ("task", "prompt")),
    ("Workflow", ("task", "retries")),
    ("Workflow", ("task", "dependsOn")),
    ("Workflow", ("task", "bogus")),
    ("Agent", ("role",)),
    ("Agent", ("model", "temperature")),
    ("Agent", ("model", "maxTokens")),
    ("Agent", ("model", "apiKeySecretRef")),
    ("Agent", ("skills",)),
    ("Agent", ("replicas",)),
    ("Agent", ("resources", "limits", "memory")),
    ("Tenant", ("namespaces",)),
    ("Tenant", ("quota", "memory")),
    ("Tenant", ("quota", "cpu")),
    ("Tenant", ("networkIsolation", "modelEgressCIDRs")),
    ("Tenant", ("networkIsolation", "modelEgressPorts")),
    ("Tenant", ("podSecurity",)),
]


def changed(kind: str, path: tuple[str, ...], value: Any) -> dict[str, Any]:
    body = copy.deepcopy(DOCUMENTS[kind])
    target = body["spec"]
    if path[0] == "task":
        target, path = target["tasks"][0], path[1:]
    for key in path[:-1]:
        target = target.setdefault(key, {})
    target[path[-1]] = value
    return body


def verdicts(body: dict[str, Any]) -> tuple[bool, bool]:
    """(the CRD schema accepts it, the strict model accepts it)."""
    kind = served_kind(body["apiVersion"], body["kind"])
    assert kind is not None
    body = {**body, "metadata": {"name": "x"}}  # only the spec is the models' business
    try:
        kind.spec.model_validate_json(json.dumps(without_nulls(body["spec"])), strict=True)
    except ValidationError:
        return not object_problems(kind, body), False
    return not object_problems(kind, body), True


def corpus_objects() -> list[dict[str, Any]]:
    bodies = []
    for entry in ENTRIES:
        text = entry.text.decode(errors="replace") if isinstance(entry.text, bytes) else entry.text
        try:
            documents = parse_documents(text, entry.id)
        except DocumentError:
            continue
        for document in documents:
            items = (
                document.body.get("items", [document.body])
                if isinstance(document.body, dict)
                else []
            )
            bodies += [item for item in items if _served_with_spec(item)]
    return bodies


def _served_with_spec(body: Any) -> bool:
    try:
        return (
            isinstance(body.get("spec"), dict)
            and served_kind(body["apiVersion"], body["kind"]) is not None
        )
    except (AttributeError, KeyError, TypeError, ValueError):
        return False


@pytest.mark.parametrize(
    ("kind", "path", "value"),
    [(kind, path, value) for (kind, path), value in itertools.product(FIELDS, VALUES)],
)
def test_schema_and_models_agree_on_every_changed_field(
    kind: str, path: tuple[str, ...], value: Any
) -> None:
    schema_ok, model_ok = verdicts(changed(kind, path, value))
    assert schema_ok == model_ok


def test_schema_and_models_agree_on_the_adversarial_corpus() -> None:
    bodies = corpus_objects()
    assert len(bodies) > 100
    disagreeing = [body["metadata"] for body in bodies if len(set(verdicts(body))) > 1]
    assert disagreeing == []


def test_a_repeated_key_keeps_its_last_value_with_a_warning() -> None:
    text = "a: &x {b: 1, c: 2}\nd: {<<: *x, b: 3}\na: 2\n"
    [document] = parse_documents(text, "f")
    assert document.body == {"a": 2, "d": {"b": 3, "c": 2}}
    assert document.warnings == (
        "line 3: key 'a' is given twice in one mapping; the last value is used, as kubectl uses it",
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: 2025-01-01\n", None),
        ("a: .nan\n", "a number is nan, which JSON cannot carry"),
        ("a: 99999999999999999999\n", "a number has 20 digits; integers are 64-bit"),
        ("a: " + "[" * 101 + "]" * 101, "a value is nested more than 100 levels deep"),
        ('{"a": ' + "[" * 101 + "]" * 101 + "}", "a value is nested more than 100 levels deep"),
        ('{"a": NaN}', "NaN is not a number JSON can carry"),
        ('{"a": 1}\n---\n{}', "not valid JSON at line 2"),
    ],
)
def test_documents_read_as_kubectl_reads_them(text: str, message: str | None) -> None:
    if message is None:
        assert parse_documents(text, "f")[0].body == {"a": "2025-01-01"}
    else:
        with pytest.raises(DocumentError, match=message.replace("[", r"\[")):
            parse_documents(text, "f")
