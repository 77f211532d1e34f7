"""A Workflow's spec resolved into the one its run follows: its template's tasks, its inputs.

A Workflow may name a WorkflowTemplate (``workflowTemplateRef``) and take inputs from
ConfigMap and Secret keys (``inputsFrom``). Resolving it, in two pure steps:

1. :func:`merge` with the template: the template's tasks and settings, a setting the
   Workflow gives with other than its default value overriding the template's (as Argo
   merges: a default value cannot be told from one not given, since the API server fills
   defaults in), the template's inputs and ``inputsFrom`` as defaults that the Workflow's
   override by name. A Workflow may give only inputs the template declares.
2. :func:`finish` with what the caller read of the ConfigMaps and Secrets the merged inputs
   name: a ConfigMap's value becomes an input; a Secret input stays a reference, checked to
   exist, whose value only the task pods receive (``api.sources``).

The result is a plain ``WorkflowSpec`` with tasks, no template reference and Secret inputs
only, which ``check_workflow`` and the reconcile core take as they take any other; or why
not: ``UnresolvedSpec`` when something named does not exist (the run waits: Pending,
reasons ``WorkflowTemplateNotFound`` and ``InputSourceNotFound``), ``InvalidSpec`` when the
Workflow and template do not fit (an input the template does not have, a template that does
not parse; phase Error). This module reads nothing itself: the operator's shell, ``troupe
run`` and ``troupe validate`` look things up, each in its own place, and it never sees a
Secret's value, only its keys.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from troupe_operator.api import (
    InputFrom,
    ResolvedFrom,
    TemplatePin,
    WorkflowSpec,
    WorkflowTemplateSpec,
)
from troupe_operator.workflow import InvalidSpec, UnresolvedSpec, spec_hash

WORKFLOW_TEMPLATE_NOT_FOUND: Final = "WorkflowTemplateNotFound"
INPUT_SOURCE_NOT_FOUND: Final = "InputSourceNotFound"
OWN_FIELDS: Final = frozenset({"workflow_template_ref", "inputs", "inputs_from", "tasks"})
"""What a Workflow gives of its own; every other field of its spec is a run setting."""


@dataclass(frozen=True)
class Template:
    """A WorkflowTemplate as read: its spec (None when it does not parse, and why), and which
    version of it this is."""

    pin: TemplatePin
    spec: WorkflowTemplateSpec | None
    problems: Sequence[str] = ()


@dataclass(frozen=True)
class Merged:
    """A Workflow merged with its template: ``spec`` has the run's tasks and settings, its
    plain inputs, and in ``inputsFrom`` every input still to read."""

    spec: WorkflowSpec
    resolved_from: ResolvedFrom


def needs_resolution(spec: WorkflowSpec) -> bool:
    """Whether the spec names anything to read before its run can start."""
    return spec.workflow_template_ref is not None or bool(spec.inputs_from)


def input_problems(spec: WorkflowSpec) -> list[str]:
    """What is wrong with one object's own inputs: a name given twice."""
    counts = Counter(source.name for source in spec.inputs_from)
    problems = [
        f"input '{name}' is given {count} times in inputsFrom"
        for name, count in counts.items()
        if count > 1
    ]
    problems += [
        f"input '{name}' is given both in inputs and in inputsFrom"
        for name in sorted(counts.keys() & spec.inputs.keys())
    ]
    return problems


def merge(own: WorkflowSpec, template: Template | None) -> Merged | InvalidSpec | UnresolvedSpec:
    """The Workflow merged with ``template`` (the one its ``workflowTemplateRef`` names, as
    read; None when there is no such template)."""
    problems = input_problems(own)
    ref = own.workflow_template_ref
    if ref is None:
        if problems:
            return InvalidSpec(problems)
        return Merged(own, ResolvedFrom(workflow_spec_hash=spec_hash(own)))
    if template is None:
        return UnresolvedSpec(
            WORKFLOW_TEMPLATE_NOT_FOUND, f"WorkflowTemplate '{ref.name}' does not exist"
        )
    base = template.spec
    if base is None:
        return InvalidSpec(
            [f"WorkflowTemplate '{ref.name}' is invalid: {p}" for p in template.problems]
        )
    problems += [f"WorkflowTemplate '{ref.name}': {p}" for p in input_problems(base)]
    declared = base.inputs.keys() | {source.name for source in base.inputs_from}
    given = own.inputs.keys() | {source.name for source in own.inputs_from}
    names = ", ".join(sorted(declared)) or "none"
    problems += [
        f"input '{name}' is not an input of WorkflowTemplate '{ref.name}' (its inputs: {names})"
        for name in sorted(given - declared)
    ]
    if problems:
        return InvalidSpec(problems)
    fields = {name: getattr(base, name) for name in WorkflowSpec.model_fields}
    fields.update(_settings(own))
    fields["workflow_template_ref"] = None
    fields["inputs"] = {k: v for k, v in base.inputs.items() if k not in given} | own.inputs
    fields["inputs_from"] = [s for s in base.inputs_from if s.name not in given] + list(
        own.inputs_from
    )
    resolved_from = ResolvedFrom(workflow_spec_hash=spec_hash(own), workflow_template=template.pin)
    return Merged(WorkflowSpec.model_validate(fields), resolved_from)


def _settings(own: WorkflowSpec) -> dict[str, object]:
    """The run settings the Workflow gives with other than their default values."""
    settings = {}
    for name, field in WorkflowSpec.model_fields.items():
        value = getattr(own, name)
        if name not in OWN_FIELDS and value != field.get_default(call_default_factory=True):
            settings[name] = value
    return settings


def finish(
    merged: Merged,
    config_maps: Mapping[str, Mapping[str, str] | None],
    secrets: Mapping[str, Collection[str] | None],
) -> WorkflowSpec | UnresolvedSpec:
    """The resolved spec, given the data of the ConfigMaps and the keys of the Secrets that
    ``merged`` names (by name; None: it does not exist)."""
    inputs = dict(merged.spec.inputs)
    secret_inputs = []
    for source in merged.spec.inputs_from:
        missing = _missing(source, config_maps, secrets)
        if missing is not None:
            return UnresolvedSpec(INPUT_SOURCE_NOT_FOUND, missing)
        if source.config_map_key_ref is not None:
            ref = source.config_map_key_ref
            inputs[source.name] = (config_maps.get(ref.name) or {})[ref.key]
        else:
            secret_inputs.append(source)
    return merged.spec.model_copy(update={"inputs": inputs, "inputs_from": secret_inputs})


def _missing(
    source: InputFrom,
    config_maps: Mapping[str, Mapping[str, str] | None],
    secrets: Mapping[str, Collection[str] | None],
) -> str | None:
    """What the input waits for, if its ConfigMap or Secret, or the key in it, is missing."""
    ref = source.config_map_key_ref or source.secret_key_ref
    assert ref is not None  # an InputFrom has exactly one
    kind, found = (
        ("ConfigMap", config_maps) if source.config_map_key_ref is not None else ("Secret", secrets)
    )
    keys = found.get(ref.name)
    if keys is None:
        return f"{kind} '{ref.name}' (input '{source.name}') does not exist"
    if ref.key not in keys:
        return f"{kind} '{ref.name}' has no key '{ref.key}' (input '{source.name}')"
    return None


def config_map_names(spec: WorkflowSpec) -> list[str]:
    """The ConfigMaps a merged spec's inputs are read from."""
    names = (s.config_map_key_ref.name for s in spec.inputs_from if s.config_map_key_ref)
    return sorted(set(names))


def secret_names(spec: WorkflowSpec) -> list[str]:
    """The Secrets a merged spec's inputs come from."""
    return sorted({s.secret_key_ref.name for s in spec.inputs_from if s.secret_key_ref})
