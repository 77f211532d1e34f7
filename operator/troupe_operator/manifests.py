"""Reading Troupe objects from YAML files, as ``kubectl apply -f`` would take them.

Files may mix Agents, Workflows, Tenants and Secrets in many documents. This
module turns them into typed objects or into readable problems; it never lets
a parser's traceback reach a user.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from troupe_operator.api import API_VERSION, AgentSpec, ApiModel, TenantSpec, WorkflowSpec
from troupe_operator.api.common import DNS_LABEL_PATTERN, DNS_SUBDOMAIN_PATTERN

SPEC_MODELS: dict[str, type[ApiModel]] = {
    "Agent": AgentSpec,
    "Workflow": WorkflowSpec,
    "Tenant": TenantSpec,
}
CLUSTER_SCOPED = frozenset({"Tenant"})
NAME_PATTERNS = frozenset({DNS_LABEL_PATTERN, DNS_SUBDOMAIN_PATTERN})


class ManifestError(Exception):
    """A file that cannot be read or parsed as YAML at all."""


@dataclass(frozen=True)
class Manifest:
    """One document of one file."""

    source: str
    body: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.body.get("kind") or "?")

    @property
    def name(self) -> str:
        metadata = self.body.get("metadata")
        name = metadata.get("name") if isinstance(metadata, dict) else None
        return str(name) if name else "?"

    @property
    def namespace(self) -> str | None:
        if self.kind in CLUSTER_SCOPED:
            return None
        metadata = self.body.get("metadata")
        namespace = metadata.get("namespace") if isinstance(metadata, dict) else None
        return str(namespace) if namespace else "default"

    @property
    def is_troupe(self) -> bool:
        return self.kind in SPEC_MODELS

    @property
    def label(self) -> str:
        return f"{self.kind}/{self.name}"


def load(paths: Iterable[str | Path]) -> list[Manifest]:
    """Every document of every file, in order. Raises ManifestError on the first bad file."""
    manifests = []
    for path in paths:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
            documents = list(yaml.safe_load_all(text))
        except OSError as error:
            raise ManifestError(f"{source}: cannot read: {error.strerror or error}") from None
        except UnicodeDecodeError:
            raise ManifestError(f"{source}: cannot read: not UTF-8 text") from None
        except yaml.YAMLError as error:
            where = getattr(error, "problem_mark", None)
            line = f" at line {where.line + 1}" if where is not None else ""
            problem = getattr(error, "problem", None) or str(error)
            raise ManifestError(f"{source}: not valid YAML{line}: {problem}") from None
        for document in documents:
            if document is None:
                continue
            if not isinstance(document, dict):
                raise ManifestError(f"{source}: a document is not a mapping of fields")
            manifests.append(Manifest(source=source, body=document))
    return manifests


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
    if detail["type"] == "string_pattern_mismatch" and detail["ctx"]["pattern"] in NAME_PATTERNS:
        return (
            f"{detail['input']!r} is not a valid name: use lowercase letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return detail["msg"]


def parse_spec(manifest: Manifest) -> tuple[ApiModel | None, list[str]]:
    """The typed spec of a Troupe object, or the reasons it has none."""
    body = manifest.body
    problems = []
    if body.get("apiVersion") != API_VERSION:
        problems.append(f"apiVersion is {body.get('apiVersion')!r}; expected {API_VERSION!r}")
    if manifest.name == "?":
        problems.append("metadata.name is missing")
    spec = body.get("spec")
    if not isinstance(spec, dict):
        return None, [*problems, "spec is missing or not a mapping"]
    try:
        model = SPEC_MODELS[manifest.kind].model_validate(spec)
    except ValidationError as error:
        return None, problems + schema_messages(error)
    return (None if problems else model), problems


def secret_value(manifests: Sequence[Manifest], namespace: str, name: str, key: str) -> str | None:
    """A value of a Secret given in the files (``stringData`` or base64 ``data``)."""
    for manifest in manifests:
        if (manifest.kind, manifest.name, manifest.namespace) != ("Secret", name, namespace):
            continue
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
