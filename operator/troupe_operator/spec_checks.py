"""Semantic checks of one Workflow spec that its CRD schema cannot express.

The schema already guarantees types, bounds and name patterns. What remains
needs the whole spec: task names unique, dependencies that exist and form no
cycle, templates that render to something and only read inputs that exist and
tasks that are upstream, agents that exist, a name short enough to label
children with, and a spec small enough to record.
Pure and free of YAML and the cluster, so the reconcile core runs them; each
check returns plain sentences, so the operator can put them in a condition
and the CLI can print them, unchanged.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection

from troupe_operator import dag
from troupe_operator.api import WorkflowSpec
from troupe_operator.templates import TemplateError, references, renders_nothing

LABEL_VALUE_MAX = 63
MAX_SPEC_BYTES = 1_000_000
"""A run records its spec in a ConfigMap, and a ConfigMap holds at most 1 MiB (1,048,576
bytes) of data; the margin leaves room for the key and JSON growth."""


def check_name(name: str) -> list[str]:
    """Names end up as label values on every child (``troupe.dev/workflow=NAME``)."""
    if len(name) > LABEL_VALUE_MAX:
        return [
            f"name is {len(name)} characters; at most {LABEL_VALUE_MAX} fit in the "
            "labels of the objects Troupe creates for it"
        ]
    return []


def check_workflow(
    name: str, spec: WorkflowSpec, known_agents: Collection[str] | None = None
) -> list[str]:
    """Every semantic problem of a Workflow, in the order a person would fix them.

    ``known_agents`` are the Agents in the Workflow's namespace; None skips that
    check (the Agents may be applied later or live only in the cluster).
    """
    problems = check_name(name)
    size = len(spec.model_dump_json(by_alias=True, exclude_none=True).encode())
    if size > MAX_SPEC_BYTES:
        problems.append(
            f"spec is {size} bytes as JSON; at most {MAX_SPEC_BYTES} (MAX_SPEC_BYTES) fit in "
            "the ConfigMap its run is recorded in"
        )
    counts = Counter(task.name for task in spec.tasks)
    problems += [f"task name '{n}' is used {c} times" for n, c in counts.items() if c > 1]
    names = set(counts)

    dependencies: dict[str, list[str]] = {}
    for task in spec.tasks:
        for dependency in task.depends_on:
            if dependency == task.name:
                problems.append(f"task '{task.name}' depends on itself")
            elif dependency not in names:
                problems.append(f"task '{task.name}' depends on unknown task '{dependency}'")
        dependencies[task.name] = [d for d in task.depends_on if d in names and d != task.name]

    cycle = dag.find_cycle(dependencies)
    if cycle:
        problems.append("dependency cycle: " + " -> ".join(cycle))
        upstream: dict[str, frozenset[str]] | None = None
    else:
        upstream = dag.ancestors(dependencies)

    for task in spec.tasks:
        problems += _check_template(task.name, task.prompt, spec.inputs.keys(), upstream)
        if known_agents is not None and task.agent not in known_agents:
            problems.append(f"task '{task.name}' uses agent '{task.agent}', which is not defined")
    return problems


def _check_template(
    task: str,
    template: str,
    inputs: Collection[str],
    upstream: dict[str, frozenset[str]] | None,
) -> list[str]:
    try:
        refs = references(template)
        if renders_nothing(template):
            return [f"task '{task}' prompt renders to nothing but spaces; say what the task is"]
    except TemplateError as error:
        return [f"task '{task}' prompt: {error}"]
    problems = [
        f"task '{task}' prompt uses unknown input '{name}'"
        for name in sorted(refs.inputs)
        if name not in inputs
    ]
    if upstream is not None:
        problems += [
            f"task '{task}' prompt uses the output of '{name}', which is not upstream of it"
            for name in sorted(refs.tasks)
            if name not in upstream.get(task, frozenset())
        ]
    return problems
