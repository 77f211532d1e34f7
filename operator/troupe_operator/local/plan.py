"""What ``troupe run`` will run, checked before anything starts.

Reads the files, refuses what ``troupe validate`` would refuse (with the
same lines), picks the Workflows, resolves each against the WorkflowTemplate,
ConfigMaps and Secrets its spec names (which must be in the same files, as the
cluster would hold them), applies ``--set`` and finds each Workflow's Agents
(every Agent of its namespace in the files, with its labels, for
``agentSelector``) and API keys in the same files. Every problem here is bad
input (exit 2) and is said in one line, never as a traceback; an Agent whose
key is nowhere is one, and so is a selector no Agent in the files matches
(nothing could ever be applied to end the wait): each is said before any task
starts rather than by each task.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from troupe_operator import resolution
from troupe_operator.api import AgentSpec, ResolvedFrom, WorkflowSpec, secret_inputs
from troupe_operator.manifests import (
    Manifest,
    ManifestError,
    config_map_data,
    load,
    parse_spec,
    secret_keys,
    secret_value,
    warning_lines,
)
from troupe_operator.spec_checks import check_workflow
from troupe_operator.validation import check_manifests, merge_in_files
from troupe_operator.workflow import AgentProfile, UnresolvedSpec, matching, possible_agents

FALLBACK_KEY_ENV = "OPENAI_API_KEY"
"""Where an API key comes from when the Secret an Agent names is not in the files."""


class RunInputError(Exception):
    """Input that cannot be run; ``lines`` are the problems, one per line."""

    def __init__(self, lines: Sequence[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = list(lines)


@dataclass(frozen=True)
class LocalWorkflow:
    """One Workflow to run, with the Agents of its namespace and their API keys."""

    namespace: str
    name: str
    spec: WorkflowSpec
    agents: dict[str, AgentSpec]
    api_keys: dict[str, str] = field(default_factory=dict, repr=False)
    """Agent name → API key, for the Agents that name a Secret and have a key."""
    secret_inputs: dict[str, str] = field(default_factory=dict, repr=False)
    """The variables that carry the run's inputs from Secrets to each task, with their values."""
    resolved_from: ResolvedFrom | None = None
    """What the spec was resolved from (a WorkflowTemplate of the files, inputs' sources)."""
    profiles: dict[str, AgentProfile] = field(default_factory=dict)
    """The labels of the Agents, which ``agentSelector`` reads."""

    @property
    def usable_agents(self) -> list[str]:
        """Every Agent a task of the run may run on."""
        used = set[str]().union(
            *(possible_agents(task, self.agents, self.profiles) for task in self.spec.tasks)
        )
        return sorted(used)

    @property
    def scripted_agents(self) -> list[str]:
        return [name for name in self.usable_agents if self.agents[name].model.base_url is None]


@dataclass(frozen=True)
class RunPlan:
    workflows: list[LocalWorkflow]
    warnings: list[str] = field(default_factory=list)
    """What the files hold that kubectl would take without a word (a repeated key)."""


def plan_run(
    paths: Sequence[str],
    overrides: Sequence[str] = (),
    only: str | None = None,
    environ: Mapping[str, str] = os.environ,
) -> RunPlan:
    """The checked plan; RunInputError with one line per problem otherwise."""
    try:
        manifests = load(paths)
    except ManifestError as error:
        raise RunInputError([str(error)]) from None
    problems = check_manifests(manifests)
    if problems:
        raise RunInputError([f"{m.source}: {m.label}: {message}" for m, message in problems])
    chosen = [m for m in manifests if m.kind == "Workflow" and only in (None, m.name)]
    if not chosen:
        wanted = f"Workflow '{only}'" if only else "Workflow"
        raise RunInputError([f"no {wanted} in {', '.join(paths)}"])
    values = _parse_overrides(overrides)
    workflows = [_local_workflow(m, manifests, values, environ) for m in chosen]
    _check_overrides_used(values, workflows)
    return RunPlan(workflows, warning_lines(manifests))


def _parse_overrides(overrides: Sequence[str]) -> dict[str, str]:
    values = {}
    for item in overrides:
        name, equals, value = item.partition("=")
        if not equals or not name.strip():
            raise RunInputError([f"--set {item!r}: expected name=value"])
        values[name.strip()] = value
    return values


def _input_names(spec: WorkflowSpec) -> set[str]:
    return set(spec.inputs) | {source.name for source in spec.inputs_from}


def _check_overrides_used(values: Mapping[str, str], workflows: Sequence[LocalWorkflow]) -> None:
    known = {name for workflow in workflows for name in _input_names(workflow.spec)}
    unknown = sorted(set(values) - known)
    if unknown:
        names = ", ".join(sorted(known)) or "none"
        raise RunInputError(
            [
                f"--set {name}: no Workflow run has an input '{name}' (inputs: {names})"
                for name in unknown
            ]
        )


def _local_workflow(
    manifest: Manifest,
    manifests: Sequence[Manifest],
    values: Mapping[str, str],
    environ: Mapping[str, str],
) -> LocalWorkflow:
    spec, _ = parse_spec(manifest)
    assert isinstance(spec, WorkflowSpec)  # check_manifests found no problem
    namespace = manifest.namespace or "default"
    resolved, resolved_from = _resolve(manifest, spec, manifests, namespace)
    spec = _override(resolved, values)
    found = _agents(manifests, namespace)
    agents = {name: agent for name, (agent, _) in found.items()}
    profiles = {name: AgentProfile(labels=source.labels) for name, (_, source) in found.items()}
    problems = check_workflow(manifest.name, spec, agents)
    problems += [
        f"task '{task.name}' agentSelector ({task.agent_selector.describe()}) matches no "
        f"Agent of namespace '{namespace}' in the files"
        for task in spec.tasks
        if task.agent_selector is not None and not matching(task.agent_selector, agents, profiles)
    ]
    if problems:
        raise RunInputError([f"{manifest.source}: {manifest.label}: {p}" for p in problems])
    local = LocalWorkflow(namespace, manifest.name, spec, agents, profiles=profiles)
    keys, missing = {}, []
    for name in local.usable_agents:
        agent, source = found[name]
        ref = agent.model.api_key_secret_ref
        if ref is None:
            continue
        key = secret_value(manifests, namespace, ref.name, ref.key) or environ.get(FALLBACK_KEY_ENV)
        if key:
            keys[name] = key
        else:
            missing.append(
                f"{source.source}: {source.label}: no API key: no Secret '{ref.name}' with key "
                f"'{ref.key}' in the files, and {FALLBACK_KEY_ENV}, its local fallback, is not set"
            )
    if missing:
        raise RunInputError(missing)
    inputs = {
        name: secret_value(
            manifests, namespace, source.secret_key_ref.name, source.secret_key_ref.key
        )
        or ""
        for name, source in secret_inputs(spec.inputs_from)
        if source.secret_key_ref is not None
    }
    return replace(local, api_keys=keys, secret_inputs=inputs, resolved_from=resolved_from)


def _resolve(
    manifest: Manifest, spec: WorkflowSpec, manifests: Sequence[Manifest], namespace: str
) -> tuple[WorkflowSpec, ResolvedFrom | None]:
    """The spec resolved with the WorkflowTemplate, ConfigMaps and Secrets of the files."""
    if not resolution.needs_resolution(spec):
        return spec, None
    merged = merge_in_files(manifest, spec, manifests)
    if isinstance(merged, resolution.Merged):
        config_maps = {
            name: config_map_data(manifests, namespace, name)
            for name in resolution.config_map_names(merged.spec)
        }
        secrets = {
            name: secret_keys(manifests, namespace, name)
            for name in resolution.secret_names(merged.spec)
        }
        resolved = resolution.finish(merged, config_maps, secrets)
        if isinstance(resolved, WorkflowSpec):
            return resolved, merged.resolved_from
        merged = resolved
    where = f"{manifest.source}: {manifest.label}"
    if isinstance(merged, UnresolvedSpec):
        raise RunInputError([f"{where}: {merged.message} in the files given"])
    raise RunInputError([f"{where}: {problem}" for problem in merged.problems])


def _override(spec: WorkflowSpec, values: Mapping[str, str]) -> WorkflowSpec:
    """``--set`` values replace inputs of the spec, those from Secrets included."""
    chosen = {name: value for name, value in values.items() if name in _input_names(spec)}
    sources = [source for source in spec.inputs_from if source.name not in chosen]
    return spec.model_copy(update={"inputs": spec.inputs | chosen, "inputs_from": sources})


def _agents(manifests: Sequence[Manifest], namespace: str) -> dict[str, tuple[AgentSpec, Manifest]]:
    """The namespace's Agents by name, each with the manifest it came from."""
    agents = {}
    for manifest in manifests:
        if manifest.kind == "Agent" and manifest.namespace == namespace:
            spec, _ = parse_spec(manifest)
            if isinstance(spec, AgentSpec):
                agents[manifest.name] = (spec, manifest)
    return agents
