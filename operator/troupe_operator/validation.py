"""Checks of a set of manifests, as ``troupe validate`` and ``troupe run`` read them.

Each object is checked on its own (schema, then ``spec_checks``) and against
the others: a Workflow's agents among the Agents given, no object twice, no
namespace claimed by two Tenants. One sentence per problem, with the object
it belongs to.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

from troupe_operator.api import TenantSpec, WorkflowSpec
from troupe_operator.manifests import Manifest, parse_spec
from troupe_operator.spec_checks import check_name, check_workflow


def check_manifests(manifests: Sequence[Manifest]) -> list[tuple[Manifest, str]]:
    """Every problem of a set of objects, each with the object it belongs to.

    Objects are checked against each other too: a Workflow's agents must be
    among the Agents given in its namespace (when any Agent is given at all),
    no object may be given twice, and no namespace may belong to two Tenants.
    """
    found: list[tuple[Manifest, str]] = []
    agents: dict[str | None, set[str]] = defaultdict(set)
    for manifest in manifests:
        if manifest.kind == "Agent":
            agents[manifest.namespace].add(manifest.name)

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
        if isinstance(spec, WorkflowSpec):
            known = agents.get(manifest.namespace, set()) if agents else None
            problems += check_workflow(manifest.name, spec, known)
        else:
            problems += check_name(manifest.name)
        if isinstance(spec, TenantSpec):
            problems += _check_tenant(manifest.name, spec, tenant_of)
        found += [(manifest, problem) for problem in problems]
    return found


def _check_tenant(name: str, spec: TenantSpec, tenant_of: dict[str, str]) -> list[str]:
    problems = []
    for namespace, count in Counter(spec.namespaces).items():
        if count > 1:
            problems.append(f"namespace '{namespace}' is listed {count} times")
        owner = tenant_of.setdefault(namespace, name)
        if owner != name:
            problems.append(f"namespace '{namespace}' already belongs to Tenant '{owner}'")
    return problems
