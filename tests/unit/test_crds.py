"""The committed CRDs: generated from the models, structural, valid, and fit for the examples."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from troupe_operator import crdgen
from troupe_operator.api.crd import KINDS, Kind

ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = ROOT / "crds"
CRD_DIRS = [ROOT / directory for directory in crdgen.DIRECTORIES]
"""``crds/`` and the chart's ``charts/troupe/crds/``: both generated, both checked."""
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
KUBERNETES_VERSION = kubernetes_validate.latest_version()


def committed(kind: Kind) -> str:
    return (CRD_DIR / f"{kind.plural}.troupe.dev.yaml").read_text()


def schema_of(kind_name: str) -> dict[str, Any]:
    kind = next(k for k in KINDS if k.kind == kind_name)
    crd = yaml.safe_load(committed(kind))
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from nodes(sub, f"{path}.{name}")
    if "items" in schema:
        yield from nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from nodes(schema["additionalProperties"], f"{path}{{}}")


@pytest.mark.parametrize("directory", CRD_DIRS, ids=lambda d: str(d.relative_to(ROOT)))
@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_committed_crd_matches_the_models(kind: Kind, directory: Path) -> None:
    where = directory.relative_to(ROOT)
    path = directory / crdgen.file_name(kind)
    assert path.is_file(), f"{where} has no {path.name}: run `make crds` and commit {where}/"
    assert path.read_text() == crdgen.render(kind), f"run `make crds` and commit {where}/"


@pytest.mark.parametrize("directory", CRD_DIRS, ids=lambda d: str(d.relative_to(ROOT)))
def test_no_crd_the_models_do_not_generate(directory: Path) -> None:
    expected = {crdgen.file_name(kind) for kind in KINDS}
    assert {path.name for path in directory.iterdir()} == expected


def test_the_generator_writes_both_directories(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert crdgen.main([]) == 0
    for directory in crdgen.DIRECTORIES:
        for kind in KINDS:
            assert (tmp_path / directory / crdgen.file_name(kind)).read_text() == crdgen.render(
                kind
            )


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_crd_passes_kubernetes_validate(kind: Kind) -> None:
    kubernetes_validate.validate(yaml.safe_load(committed(kind)), KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("kind", [kind.kind for kind in KINDS])
def test_schema_is_structural_and_explained(kind: str) -> None:
    for path, node in nodes(schema_of(kind)):
        assert "$ref" not in node, path
        if "anyOf" in node:
            assert node.get("x-kubernetes-int-or-string") is True, path
        else:
            assert "type" in node, f"{path} has no type"
        if path.startswith(".spec.") and not path.endswith(("[]", "{}")):
            assert node.get("description"), f"{path} has no description for kubectl explain"


def test_printer_columns_scope_and_category() -> None:
    columns = {
        kind.kind: [
            c["name"].upper()
            for c in crdgen.crd(kind)["spec"]["versions"][0]["additionalPrinterColumns"]
        ]
        for kind in KINDS
    }
    workflow = ["PHASE", "PROGRESS", "TOKENS", "TEMPLATE", "PRIORITY", "AGE", "DURATION"]
    assert columns["Workflow"] == workflow
    assert columns["WorkflowTemplate"] == ["PARALLELISM", "TIMEOUT", "AGE"]
    assert columns["Agent"] == ["ROLE", "MODEL", "READY", "SUPERVISOR", "AGE"]
    assert columns["Tenant"] == ["NAMESPACES", "RUNNING", "TOKENS", "AGE"]
    assert columns["Conversation"] == ["AGENT", "AGE"]
    scopes = {kind.kind: crdgen.crd(kind)["spec"]["scope"] for kind in KINDS}
    assert scopes == {
        "Agent": "Namespaced",
        "Workflow": "Namespaced",
        "Tenant": "Cluster",
        "Conversation": "Namespaced",
        "WorkflowTemplate": "Namespaced",
    }
    for kind in KINDS:
        version = crdgen.crd(kind)["spec"]["versions"][0]
        has_status = "status" in version["schema"]["openAPIV3Schema"]["properties"]
        assert version.get("subresources") == ({"status": {}} if has_status else None)
        assert has_status == (kind.kind not in ("Conversation", "WorkflowTemplate"))
        assert "troupe" in crdgen.crd(kind)["spec"]["names"]["categories"]


def example_documents() -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc)
        for path in EXAMPLES
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


@pytest.mark.parametrize(("label", "document"), example_documents(), ids=lambda v: str(v)[:60])
def test_example_fits_its_schema(label: str, document: dict[str, Any]) -> None:
    if document["apiVersion"].startswith("troupe.dev/"):
        jsonschema.validate(document, schema_of(document["kind"]))
    else:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_schema_rejects_what_the_models_reject() -> None:
    bad = {"apiVersion": "troupe.dev/v1alpha1", "kind": "Workflow", "metadata": {"name": "w"}}
    bad["spec"] = {"tasks": [{"name": "Bad_Name", "agent": "a", "prompt": "p"}]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema_of("Workflow"))
