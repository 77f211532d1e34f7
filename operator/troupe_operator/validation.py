"""Checks of a set of manifests, as ``troupe validate`` and ``troupe run`` read them.

Each object is checked on its own (schema, then ``spec_checks``) and against
the others: a Workflow's agents among the Agents given, its WorkflowTemplate
among the templates given (and checked as resolved with it), no object twice,
no namespace claimed by two Tenants. One sentence per problem, with the object
it belongs to.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Collection, Sequence

from troupe_operator import resolution
from troupe_operator.api import TemplatePin, TenantSpec, WorkflowSpec, WorkflowTemplateSpec
from troupe_operator.manifests import Manifest, find, parse_spec
from troupe_operator.spec_checks import check_name, check_spec, check_workflow
from troupe_operator.workflow import InvalidSpec, UnresolvedSpec


def check_manifests(manifests: Sequence[Manifest]) -> list[tuple[Manifest, str]]:
    """Every problem of a set of objects, each with the object it belongs to.

    Objects are checked against each other too: a Workflow's agents must be
    among the Agents given in its namespace (when any Agent is given at all), its
    WorkflowTemplate among the templates given (when any is given at all), no
    object may be given twice, and no namespace may belong to two Tenants.
    """
    found: list[tuple[Manifest, str]] = []
    agents: dict[str | None, set[str]] = defaultdict(set)
    for manifest in manifests:
        if manifest.kind == "Agent":
            agents[manifest.namespace].add(manifest.name)
    templates_given = any(manifest.kind == "WorkflowTemplate" for manifest in manifests)

    seen: set[tuple[str, str | None, str]] = set()
    tenant_of: dict[str, str] = {}
    for manifest in manifests:
        identity = (manifest.kind, manifest.namespace, manifest.name)
        if identity in seen:
            found.append((manifest, "is given more than once"))
        seen.add(identity)
        if not manifest.is_troupe and manifest.api_version and manifest.kind != "?":
            continue  # another API's object: the API server checks it, we cannot
        spec, problems = parse_spec(manifest)
        known = agents.get(manifest.namespace, set()) if agents else None
        if isinstance(spec, WorkflowTemplateSpec):
            problems += resolution.input_problems(spec) + check_spec(spec, known)
        elif isinstance(spec, WorkflowSpec):
            problems += _check_workflow(manifest, spec, manifests, known, templates_given)
        else:
            problems += check_name(manifest.name)
        if isinstance(spec, TenantSpec):
            problems += _check_tenant(manifest.name, spec, tenant_of)
        found += [(manifest, problem) for problem in problems]
    return found


def template_in_files(
    manifests: Sequence[Manifest], namespace: str, name: str
) -> resolution.Template | None:
    """A WorkflowTemplate given in the files, as resolution takes it."""
    manifest = find(manifests, "WorkflowTemplate", namespace, name)
    if manifest is None:
        return None
    spec, problems = parse_spec(manifest)
    parsed = spec if isinstance(spec, WorkflowTemplateSpec) else None
    return resolution.Template(TemplatePin(name=name), parsed, problems)


def merge_in_files(
    manifest: Manifest, spec: WorkflowSpec, manifests: Sequence[Manifest]
) -> resolution.Merged | InvalidSpec | UnresolvedSpec:
    """A Workflow merged with its WorkflowTemplate as the files give it."""
    ref = spec.workflow_template_ref
    namespace = manifest.namespace or "default"
    template = template_in_files(manifests, namespace, ref.name) if ref is not None else None
    return resolution.merge(spec, template)


def _check_workflow(
    manifest: Manifest,
    spec: WorkflowSpec,
    manifests: Sequence[Manifest],
    known_agents: Collection[str] | None,
    templates_given: bool,
) -> list[str]:
    """A Workflow's problems; one naming a template is checked as merged with it, when the
    files give templates (else the template may be in the cluster: only its own inputs)."""
    if not resolution.needs_resolution(spec):
        return check_workflow(manifest.name, spec, known_agents)
    merged = merge_in_files(manifest, spec, manifests)
    if isinstance(merged, resolution.Merged):
        return check_workflow(manifest.name, merged.spec, known_agents)
    if isinstance(merged, InvalidSpec):
        return check_name(manifest.name) + list(merged.problems)
    if templates_given:
        ref = spec.workflow_template_ref
        assert ref is not None  # only a template is looked for here
        return [f"uses WorkflowTemplate '{ref.name}', which is not defined"]
    return check_name(manifest.name) + resolution.input_problems(spec)


def _check_tenant(name: str, spec: TenantSpec, tenant_of: dict[str, str]) -> list[str]:
    problems = []
    for namespace, count in Counter(spec.namespaces).items():
        if count > 1:
            problems.append(f"namespace '{namespace}' is listed {count} times")
        owner = tenant_of.setdefault(namespace, name)
        if owner != name:
            problems.append(f"namespace '{namespace}' already belongs to Tenant '{owner}'")
    return problems
