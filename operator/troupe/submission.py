"""The Workflow objects a submission creates: from a template, with inputs, under a fresh name.

``--from workflowtemplate/NAME`` becomes a Workflow whose spec is only
``workflowTemplateRef: {name: NAME}`` and the inputs given; the operator resolves and pins
the template when the run starts. ``-p name=value`` sets an input; on a Workflow written
out in full, an input it does not declare is refused (its templates could never read it),
while a template's inputs are the operator's to check. ``generateName`` lets the API
server pick a unique name, as ``argo submit`` does for templates.

It builds objects and never sends them; every refusal is InvalidRequest with one line.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from typing import Final

from troupe.errors import InvalidRequest
from troupe.kube import Body
from troupe_operator.api import API_VERSION
from troupe_operator.api.common import DNS_SUBDOMAIN_PATTERN

TEMPLATE_KINDS: Final = ("workflowtemplate", "workflowtemplates", "template", "wftmpl")
"""What ``--from KIND/NAME`` accepts as KIND (argo's ``workflowtemplate/NAME`` among them)."""
MAX_NAME_CHARS: Final = 253
GENERATED_SUFFIX_CHARS: Final = 5
"""Characters the API server appends to a ``generateName``."""


def parse_params(items: Sequence[str]) -> dict[str, str]:
    """``name=value`` pairs (the value may hold ``=``); the last of a repeated name wins."""
    values: dict[str, str] = {}
    for item in items:
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            raise InvalidRequest(f"-p {item!r}: expected name=value")
        values[key.strip()] = value
    return values


def template_name(reference: str) -> str:
    """NAME from ``workflowtemplate/NAME``."""
    kind, slash, template = reference.partition("/")
    if not slash or kind.lower() not in TEMPLATE_KINDS:
        raise InvalidRequest(f"--from {reference!r}: expected workflowtemplate/NAME")
    if len(template) > MAX_NAME_CHARS or not re.fullmatch(DNS_SUBDOMAIN_PATTERN, template):
        raise InvalidRequest(f"--from {reference!r}: {template!r} is not a valid object name")
    return template


def from_template(template: str, inputs: Mapping[str, str], namespace: str | None = None) -> Body:
    """A Workflow that runs the WorkflowTemplate ``template`` with ``inputs``."""
    metadata: Body = {"generateName": f"{template}-"}
    if namespace:
        metadata["namespace"] = namespace
    spec: Body = {"workflowTemplateRef": {"name": template}}
    if inputs:
        spec["inputs"] = dict(inputs)
    return {"apiVersion": API_VERSION, "kind": "Workflow", "metadata": metadata, "spec": spec}


def with_inputs(workflows: Sequence[Body], values: Mapping[str, str]) -> list[Body]:
    """Copies with each value set on every Workflow that declares the input; InvalidRequest
    for a value no Workflow declares."""
    declared = {
        name for workflow in workflows for name in (workflow.get("spec") or {}).get("inputs") or {}
    }
    unknown = sorted(set(values) - declared)
    if unknown:
        names = ", ".join(sorted(declared)) or "none"
        raise InvalidRequest(
            f"-p {unknown[0]}: no Workflow submitted has that input (inputs: {names})"
        )
    updated = []
    for workflow in workflows:
        copied = copy.deepcopy(workflow)
        inputs = (copied.get("spec") or {}).get("inputs")
        if isinstance(inputs, dict):
            inputs.update({key: value for key, value in values.items() if key in inputs})
        updated.append(copied)
    return updated


def named(workflow: Body, *, name: str | None = None, generate: bool = False) -> Body:
    """A copy under ``name``, or with ``generateName: <its name>-`` when ``generate``."""
    copied = copy.deepcopy(workflow)
    metadata = copied.setdefault("metadata", {})
    if name is not None:
        metadata.pop("generateName", None)
        metadata["name"] = name
    elif generate and metadata.get("name"):
        metadata["generateName"] = f"{metadata.pop('name')}-"
    return copied


def as_generated(workflow: Body) -> Body:
    """The object as the API server judges it once it has generated a name (for checks
    made before sending; the name is a stand-in)."""
    metadata = workflow.get("metadata") or {}
    if metadata.get("name") or not metadata.get("generateName"):
        return workflow
    stand_in = str(metadata["generateName"]) + "x" * GENERATED_SUFFIX_CHARS
    return {**workflow, "metadata": {**metadata, "name": stand_in}}
