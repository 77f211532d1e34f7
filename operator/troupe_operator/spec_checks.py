"""Semantic checks of one Workflow spec that its CRD schema cannot express.

The schema already guarantees types, bounds and name patterns. What remains
needs the whole spec: task names unique, dependencies that exist and form no
cycle, templates that render to something and only read inputs that exist and
tasks that are upstream, exactly one of ``agent`` and ``agentSelector``,
fallback Agents listed once, agents that exist, a name short enough to label
children with, a spec small enough to record, output schemas that are JSON
Schemas of objects, conditions that parse and read only inputs that exist
and fields an upstream task's ``outputSchema`` declares (never an input from a Secret, whose
value the operator never holds), forEach lists that an upstream ``outputSchema`` declares
as arrays, ``{{ item }}`` only in forEach tasks, a bound on all the tasks and instances a
run may have, candidates that can be named and judged, and supervise tasks whose unit keys
fit in a label and whose members are named once.
Pure and free of YAML and the cluster, so the reconcile core runs them; each
check returns plain sentences, so the operator can put them in a condition
and the CLI can print them, unchanged.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Collection, Mapping
from typing import Any, Final

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from troupe_operator import dag, expressions
from troupe_operator.api import INSTANCE_SEPARATOR, TaskSpec, WorkflowSpec
from troupe_operator.api.candidates import JUDGE_SUFFIX
from troupe_operator.api.supervise import MAX_SUPERVISE_CONCURRENT, MAX_SUPERVISE_ITERATIONS
from troupe_operator.api.workflow import MAX_TASKS, instance_key
from troupe_operator.templates import TemplateError, references, renders_nothing

LABEL_VALUE_MAX = 63
MAX_SPEC_BYTES = 1_000_000
"""A run records its spec in a ConfigMap, and a ConfigMap holds at most 1 MiB (1,048,576
bytes) of data; the margin leaves room for the key and JSON growth."""
MAX_OUTPUT_SCHEMA_BYTES: Final = 16_384
"""Largest ``outputSchema`` as JSON: it is sent to the model with every structured call."""


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
    return check_name(name) + check_spec(spec, known_agents)


def check_spec(spec: WorkflowSpec, known_agents: Collection[str] | None = None) -> list[str]:
    """Every semantic problem of a spec of tasks (a Workflow's, resolved, or a template's)."""
    if spec.workflow_template_ref is not None:
        return [
            f"the spec names WorkflowTemplate '{spec.workflow_template_ref.name}': its tasks "
            "are checked once it is resolved (troupe_operator.resolution)"
        ]
    problems = []
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

    schemas = {task.name: task.output_schema for task in spec.tasks if task.output_schema}
    fanned = {task.name for task in spec.tasks if task.for_each is not None}
    units = sum(task.for_each.max_items if task.for_each else 1 for task in spec.tasks)
    if units > MAX_TASKS:
        problems.append(
            f"the run may have {units} tasks and forEach instances (forEach.maxItems counts "
            f"each instance); at most {MAX_TASKS}"
        )
    inputs = spec.inputs.keys() | {source.name for source in spec.inputs_from}
    secret = {source.name for source in spec.inputs_from if source.secret_key_ref is not None}
    for task in spec.tasks:
        problems += _check_template(task.name, task.prompt, inputs, upstream)
        problems += _check_schema(task)
        problems += _check_item(task)
        if upstream is not None:
            problems += _check_json_reads(task, upstream.get(task.name, frozenset()), schemas)
            problems += _check_when(task, inputs, secret, upstream, schemas, fanned)
            problems += _check_for_each(task, upstream.get(task.name, frozenset()), schemas, fanned)
        problems += _check_agents(task, known_agents)
        problems += _check_candidates(task, known_agents)
        problems += _check_supervise(task)
    return problems


def _check_agents(task: TaskSpec, known_agents: Collection[str] | None) -> list[str]:
    """Exactly one of ``agent`` and ``agentSelector``; fallbacks unique, known, not the agent."""
    where = f"task '{task.name}'"
    if task.supervise is not None:
        return _check_named(task, known_agents)  # its Agents are the loop's (_check_supervise)
    if (task.agent is None) == (task.agent_selector is None):
        given = "gives both agent and" if task.agent else "gives neither agent nor"
        return [f"{where} {given} agentSelector: give exactly one"]
    selector = task.agent_selector
    problems = []
    if selector is not None and not (selector.skills or selector.match_labels):
        problems.append(f"{where} agentSelector is empty: give skills or matchLabels, or both")
    if selector is not None and len(set(selector.skills)) < len(selector.skills):
        problems.append(f"{where} agentSelector lists a skill more than once")
    counts = Counter(task.fallback_agents)
    problems += [
        f"{where} lists fallback agent '{name}' {count} times"
        for name, count in counts.items()
        if count > 1
    ]
    if task.agent in counts:
        problems.append(f"{where} lists its own agent '{task.agent}' among its fallbackAgents")
    problems += [
        f"{where} uses agent '{name}', which is not defined"
        for name in counts
        if known_agents is not None and name not in known_agents
    ]
    return problems + _check_named(task, known_agents)


def _check_named(task: TaskSpec, known_agents: Collection[str] | None) -> list[str]:
    """Every Agent the task names exists, when the namespace's Agents are known."""
    if known_agents is None:
        return []
    return [
        f"task '{task.name}' uses agent '{agent}', which is not defined"
        for agent in task.named_agents()
        if agent not in known_agents
    ]


def _check_candidates(task: TaskSpec, known_agents: Collection[str] | None) -> list[str]:
    """One way to name the candidates' Agents, keys that fit a label, criteria that can
    decide (unique names, a positive weight), and Agents that exist."""
    candidates = task.candidates
    if candidates is None:
        return []
    where = f"task '{task.name}' candidates"
    problems = []
    if task.for_each is not None:
        problems.append(f"{where}: a task expands one way, forEach or candidates, not both")
    if (candidates.agents is None) == (candidates.count is None):
        problems.append(
            f"{where}: set exactly one of agents (one candidate on each) and count (the "
            "task's agent that many times)"
        )
    agents = candidates.agents or []
    problems += [f"{where}.agents lists '{a}' twice" for a, n in Counter(agents).items() if n > 1]
    if agents and task.agent not in agents:
        problems.append(
            f"{where}.agents does not list the task's agent '{task.agent}'; list it there, "
            "or run the task's agent count times"
        )
    longest = max(len(suffix) for suffix in [*candidates.labels(), JUDGE_SUFFIX])
    if len(task.name) + 1 + longest > LABEL_VALUE_MAX:
        problems.append(
            f"{where}: its units are named {task.name}{INSTANCE_SEPARATOR}SUFFIX (up to "
            f"{longest} characters of suffix), label values of at most {LABEL_VALUE_MAX}; "
            f"shorten the task name to {LABEL_VALUE_MAX - 1 - longest} characters"
        )
    criteria = candidates.judge.criteria
    names = Counter(criterion.name for criterion in criteria)
    problems += [
        f"{where}: judge criterion '{n}' is used {c} times" for n, c in names.items() if c > 1
    ]
    if all(criterion.weight == 0 for criterion in criteria):
        problems.append(f"{where}: every judge criterion weighs 0; at least one must be positive")
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


def _check_supervise(task: TaskSpec) -> list[str]:
    """A task runs on its agent, or is a supervise loop (which runs its own Agents); a
    loop's unit keys (``NAME.turn-N.M``) are label values too."""
    loop = task.supervise
    if loop is None:
        return []  # its agent or agentSelector: _check_agents
    where = f"task '{task.name}'"
    problems = []
    if task.agent is not None or task.agent_selector is not None:
        problems.append(
            f"{where} has agent or agentSelector and supervise: its turns run on "
            "supervise.agent, its delegations on the members"
        )
    if task.output_schema is not None or task.for_each is not None:
        problems.append(
            f"{where}: supervise cannot be combined with outputSchema or forEach (its output "
            "is the supervisor's final answer, as text)"
        )
    repeated = sorted({m for m in loop.members if loop.members.count(m) > 1})
    if repeated:
        problems.append(f"{where} supervise.members lists {', '.join(repeated)} more than once")
    longest = len(f".turn-{MAX_SUPERVISE_ITERATIONS}.{MAX_SUPERVISE_CONCURRENT}")
    if len(task.name) + longest > LABEL_VALUE_MAX:
        problems.append(
            f"{where}: the name of a supervise task is at most {LABEL_VALUE_MAX - longest} "
            f"characters, as its units' keys ({task.name}.turn-N.M) are label values of at "
            f"most {LABEL_VALUE_MAX}"
        )
    return problems


def _check_schema(task: TaskSpec) -> list[str]:
    """An ``outputSchema`` must be a valid JSON Schema (2020-12) of an object, and small."""
    schema = task.output_schema
    if schema is None:
        return []
    where = f"task '{task.name}' outputSchema"
    size = len(json.dumps(schema, separators=(",", ":")).encode())
    if size > MAX_OUTPUT_SCHEMA_BYTES:
        return [
            f"{where} is {size} bytes as JSON; at most {MAX_OUTPUT_SCHEMA_BYTES} "
            "(MAX_OUTPUT_SCHEMA_BYTES)"
        ]
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as error:
        path = "/".join(str(part) for part in error.absolute_path) or "(root)"
        return [f"{where} is not a valid JSON Schema at {path}: {error.message[:200]}"]
    if schema.get("type") != "object":
        return [f"{where} must have type: object (structured output is a JSON object)"]
    return []


def _check_json_reads(
    task: TaskSpec, upstream: frozenset[str], schemas: Mapping[str, Any]
) -> list[str]:
    """``{{ tasks.X.json }}`` in a prompt needs X to have an outputSchema."""
    try:
        read = references(task.prompt).json_tasks
    except TemplateError:
        return []  # reported by _check_template
    return [
        f"task '{task.name}' prompt uses tasks.{name}.json, but task '{name}' has no outputSchema"
        for name in sorted(read & upstream)
        if name not in schemas
    ]


def _check_item(task: TaskSpec) -> list[str]:
    """``{{ item }}`` is a forEach instance's; a forEach task's name leaves room for its
    instances' keys (``NAME.INDEX``, a label value of at most 63 characters)."""
    try:
        reads_item = references(task.prompt).item
    except TemplateError:
        return []  # reported by _check_template
    if task.for_each is None:
        if reads_item:
            return [f"task '{task.name}' prompt uses item, which only forEach tasks have"]
        return []
    longest = len(instance_key(task.name, task.for_each.max_items - 1))
    if longest > LABEL_VALUE_MAX:
        return [
            f"task '{task.name}' is a forEach task: its instances' names (e.g. "
            f"{instance_key(task.name, 0)}) must fit {LABEL_VALUE_MAX} characters; shorten it "
            f"by {longest - LABEL_VALUE_MAX}"
        ]
    return []


def _check_for_each(
    task: TaskSpec, upstream: frozenset[str], schemas: Mapping[str, Any], fanned: Collection[str]
) -> list[str]:
    """``forEach.from`` names a list that an upstream task's ``outputSchema`` declares."""
    if task.for_each is None:
        return []
    source, path = task.for_each.list_task, task.for_each.list_path
    where = f"task '{task.name}' forEach.from {task.for_each.from_}"
    if source not in upstream:
        return [f"{where}: task '{source}' is not upstream of it (add it to dependsOn)"]
    if source in fanned:
        return [f"{where}: task '{source}' is a forEach task; its json is a list of outputs"]
    if source not in schemas:
        return [f"{where}: task '{source}' has no outputSchema"]
    declared = _declared(schemas[source], path)
    if declared is None:
        return [f"{where}: the outputSchema of '{source}' declares no such field"]
    if declared.get("type") != "array":
        return [f"{where}: the outputSchema of '{source}' must declare it type: array"]
    return []


def _check_when(
    task: TaskSpec,
    inputs: Collection[str],
    secret: Collection[str],
    upstream: Mapping[str, frozenset[str]],
    schemas: Mapping[str, Any],
    fanned: Collection[str],
) -> list[str]:
    """A condition parses, and reads existing inputs and declared fields of upstream tasks."""
    if task.when is None:
        return []
    where = f"task '{task.name}' when"
    try:
        expression = expressions.parse(task.when)
    except expressions.ExpressionError as error:
        return [f"{where}: {error}"]
    problems = []
    for ref in expressions.references(expression):
        if isinstance(ref, expressions.InputRef):
            if ref.name in secret:
                problems.append(
                    f"{where} reads input '{ref.name}', which comes from a Secret: the operator "
                    "decides conditions and never holds a Secret's value"
                )
            elif ref.name not in inputs:
                problems.append(f"{where} uses unknown input '{ref.name}'")
            continue
        shown = ".".join(("tasks", ref.task, "json", *ref.path))
        if ref.task not in upstream.get(task.name, frozenset()):
            problems.append(f"{where} reads {shown}, but task '{ref.task}' is not upstream of it")
        elif ref.task in fanned:
            problems.append(
                f"{where} reads {shown}, but task '{ref.task}' is a forEach task, whose "
                "instances' fields conditions cannot read"
            )
        elif ref.task not in schemas:
            problems.append(f"{where} reads {shown}, but task '{ref.task}' has no outputSchema")
        elif _declared(schemas[ref.task], ref.path) is None:
            problems.append(
                f"{where} reads {shown}, but the outputSchema of '{ref.task}' "
                "declares no such field"
            )
    return problems


def _declared(schema: Any, path: tuple[str, ...]) -> dict[str, Any] | None:
    """The schema of the field at ``path`` when each step is a property the schema declares
    (under ``properties``); None when one is not."""
    for key in path:
        properties = schema.get("properties") if isinstance(schema, dict) else None
        if not isinstance(properties, dict) or key not in properties:
            return None
        schema = properties[key]
    return schema if isinstance(schema, dict) else {}
