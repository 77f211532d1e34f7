"""Reading Troupe objects from YAML files, as ``kubectl apply -f`` would take them.

Files may mix Agents, Workflows, WorkflowTemplates, Tenants, Secrets, ConfigMaps and ``List``
documents
(unpacked, as kubectl unpacks them). Reading is :mod:`troupe_operator.documents`
(bounded, JSON-faithful); judging an object as the API server would is
:mod:`troupe_operator.admission`; this module puts them together and turns
what passes into typed specs. It never lets a parser's traceback reach a user.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from troupe_operator.admission import object_problems, served_kind, without_nulls
from troupe_operator.api import (
    AgentSpec,
    ApiModel,
    ConversationSpec,
    TenantSpec,
    WorkflowSpec,
    WorkflowTemplateSpec,
)
from troupe_operator.api.common import DNS_LABEL_PATTERN, DNS_SUBDOMAIN_PATTERN, GROUP
from troupe_operator.documents import Document, DocumentError, read_documents

SPEC_MODELS: dict[str, type[ApiModel]] = {
    "Agent": AgentSpec,
    "Workflow": WorkflowSpec,
    "WorkflowTemplate": WorkflowTemplateSpec,
    "Tenant": TenantSpec,
    "Conversation": ConversationSpec,
}
CLUSTER_SCOPED = frozenset({"Tenant"})
NAME_PATTERNS = frozenset({DNS_LABEL_PATTERN, DNS_SUBDOMAIN_PATTERN})


class ManifestError(Exception):
    """Input that holds no objects to check: unreadable, not YAML, over a bound, or empty."""


@dataclass(frozen=True)
class Manifest:
    """One object of one file (a document, or an item of a ``List`` document)."""

    source: str
    body: dict[str, Any]
    warnings: tuple[str, ...] = ()
    """The warnings of the document it came from."""

    @property
    def kind(self) -> str:
        kind = self.body.get("kind")
        return kind if isinstance(kind, str) and kind else "?"

    @property
    def api_version(self) -> str:
        api_version = self.body.get("apiVersion")
        return api_version if isinstance(api_version, str) else ""

    @property
    def name(self) -> str:
        metadata = self.body.get("metadata")
        name = metadata.get("name") if isinstance(metadata, dict) else None
        return name if isinstance(name, str) and name else "?"

    @property
    def namespace(self) -> str | None:
        if self.kind in CLUSTER_SCOPED:
            return None
        metadata = self.body.get("metadata")
        namespace = metadata.get("namespace") if isinstance(metadata, dict) else None
        return namespace if isinstance(namespace, str) and namespace else "default"

    @property
    def labels(self) -> dict[str, str]:
        """Its ``metadata.labels`` (which an ``agentSelector`` matches on an Agent)."""
        metadata = self.body.get("metadata")
        labels = metadata.get("labels") if isinstance(metadata, dict) else None
        return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}

    @property
    def is_troupe(self) -> bool:
        """In Troupe's API group, whether or not its kind is one Troupe serves."""
        return self.api_version.rpartition("/")[0] == GROUP

    @property
    def label(self) -> str:
        """``Kind/name`` for messages; a name past any legal length is shortened."""
        name = self.name if len(self.name) <= 63 else self.name[:60] + "..."
        return f"{self.kind}/{name}"


def load(paths: Iterable[str | Path]) -> list[Manifest]:
    """Every object of every file, in order; ManifestError on a bad file or no object at all."""
    manifests = []
    names = []
    for path in paths:
        names.append(str(path))
        try:
            documents = read_documents(path)
        except DocumentError as error:
            raise ManifestError(str(error)) from None
        for document in documents:
            manifests += _objects(document)
    if not manifests:
        raise ManifestError(f"{', '.join(names)}: no objects to apply")
    return manifests


def warning_lines(manifests: Sequence[Manifest]) -> list[str]:
    """``FILE: warning: ...`` once per warning of the documents these objects came from."""
    pairs = dict.fromkeys((m.source, warning) for m in manifests for warning in m.warnings)
    return [f"{source}: warning: {warning}" for source, warning in pairs]


def _objects(document: Document) -> list[Manifest]:
    source, index, body, warnings = (
        document.source,
        document.index,
        document.body,
        document.warnings,
    )
    if not isinstance(body, dict):
        raise ManifestError(f"{source}: document {index} is not a mapping of fields")
    kind = body.get("kind")
    if not (isinstance(kind, str) and kind.endswith("List") and "items" in body):
        return [Manifest(source, body, warnings)]
    items = body["items"]
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise ManifestError(f"{source}: document {index}: a {kind}'s items must be objects")
    return [Manifest(source, item, warnings) for item in items]


def schema_messages(error: ValidationError, prefix: str = "spec") -> list[str]:
    """pydantic's errors as ``spec.tasks[0].name: message`` lines."""
    messages = []
    for detail in error.errors():
        path = prefix
        for part in detail["loc"]:
            path += f"[{part}]" if isinstance(part, int) else f".{part}"
        messages.append(f"{path}: {_readable(detail)}")
    return messages


def _readable(detail: ErrorDetails) -> str:
    if detail["type"] == "value_error":
        return str(detail["ctx"]["error"])  # a model's own rule, said in its own words
    if detail["type"] == "string_pattern_mismatch" and detail["ctx"]["pattern"] in NAME_PATTERNS:
        return (
            f"{detail['input']!r} is not a valid name: use lowercase letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return detail["msg"]


def parse_spec(manifest: Manifest) -> tuple[ApiModel | None, list[str]]:
    """The typed spec of a Troupe object, or every reason the API server would refuse it."""
    missing = [
        f"{field} is missing"
        for field, value in (("apiVersion", manifest.api_version), ("kind", manifest.kind))
        if value in ("", "?")
    ]
    if missing:
        return None, missing
    try:
        kind = served_kind(manifest.api_version, manifest.kind)
    except ValueError as error:
        return None, [str(error)]
    if kind is None:
        return None, ["is not a Troupe object"]
    problems = object_problems(kind, manifest.body)
    if problems:
        return None, problems
    try:
        # strict, from JSON: no coercion the schema would not allow ("3" is no integer)
        spec_json = json.dumps(without_nulls(manifest.body["spec"]))
        return SPEC_MODELS[kind.kind].model_validate_json(spec_json, strict=True), []
    except ValidationError as error:
        return None, schema_messages(error)


def find(manifests: Sequence[Manifest], kind: str, namespace: str, name: str) -> Manifest | None:
    """The object of that kind, namespace and name among the files' objects, if given."""
    for manifest in manifests:
        if (manifest.kind, manifest.name, manifest.namespace) == (kind, name, namespace):
            return manifest
    return None


def config_map_data(
    manifests: Sequence[Manifest], namespace: str, name: str
) -> dict[str, str] | None:
    """The ``data`` of a ConfigMap given in the files (None: not given)."""
    manifest = find(manifests, "ConfigMap", namespace, name)
    if manifest is None:
        return None
    data = manifest.body.get("data") or {}
    return {key: value for key, value in data.items() if isinstance(value, str)}


def secret_keys(manifests: Sequence[Manifest], namespace: str, name: str) -> frozenset[str] | None:
    """The keys of a Secret given in the files (None: not given)."""
    manifest = find(manifests, "Secret", namespace, name)
    if manifest is None:
        return None
    return frozenset(manifest.body.get("data") or {}) | frozenset(
        manifest.body.get("stringData") or {}
    )


def secret_value(manifests: Sequence[Manifest], namespace: str, name: str, key: str) -> str | None:
    """A value of a Secret given in the files (``stringData`` or base64 ``data``)."""
    manifest = find(manifests, "Secret", namespace, name)
    if manifest is not None:
        string_data = manifest.body.get("stringData") or {}
        if key in string_data:
            return str(string_data[key])
        encoded = (manifest.body.get("data") or {}).get(key)
        if encoded is not None:
            try:
                return base64.b64decode(str(encoded), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return None
    return None
