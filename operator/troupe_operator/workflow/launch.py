"""Turning "start attempt N of unit U" into a complete CreateTask action.

What a task needs travels by reference: its Agent's spec, the names of the
ConfigMaps holding the outputs it reads, where to write its own, for a forEach
instance which item it runs on, for a judge the ConfigMaps of the candidates it
scores, and for a supervise task's unit the earlier turns or the instruction it
reads. The template and inputs are in the run's recorded spec, which the pod
mounts. No prompt is rendered and no output is read here: that happens in the
pod, inside its own limits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from troupe_operator.api import AgentSpec, CacheTarget, OutputTarget, TaskInput, TaskSpec
from troupe_operator.templates import references
from troupe_operator.workflow.actions import CreateTask
from troupe_operator.workflow.naming import WorkflowRef
from troupe_operator.workflow.timing import TASK_DEADLINE_SHARE
from troupe_operator.workflow.units import Unit, suffix_of

API_KEY_ENV: Final = "TROUPE_API_KEY"
"""The only place a task's API key appears: this environment variable of its process."""


def upstream_tasks(task: TaskSpec) -> list[str]:
    """The tasks whose output ``task`` reads: its dependencies, those its prompt names, and
    the task holding the list a forEach expands over.

    The prompt was checked before the run started, so it parses.
    """
    names = set(task.depends_on) | references(task.prompt).tasks
    if task.for_each is not None:
        names.add(task.for_each.list_task)
    return sorted(names)


@dataclass(frozen=True)
class Reads:
    """Where the outputs a unit reads are: one ConfigMap per task, a list per forEach task,
    and the tasks a condition skipped (no output: empty text, no json)."""

    upstream: Mapping[str, str] = field(default_factory=dict)
    fan_in: Mapping[str, Sequence[str]] = field(default_factory=dict)
    skipped: Sequence[str] = ()


def create_task(
    workflow: WorkflowRef,
    unit: Unit,
    attempt: int,
    agent: AgentSpec,
    reads: Reads = Reads(),
    agent_name: str | None = None,
    cache_entry: CacheTarget | None = None,
) -> CreateTask:
    """The action starting ``attempt`` of ``unit`` on ``agent``. ``agent_name`` is the Agent
    chosen for the attempt (``troupe_operator.workflow.selection``), by default the task's;
    ``cache_entry`` where a memoized unit's pod caches its output."""
    task = unit.spec
    name = agent_name or task.agent
    if name is None:
        raise ValueError(f"no Agent chosen for task '{task.name}'")
    task_input = TaskInput(
        workflow=workflow.name,
        namespace=workflow.namespace,
        task=task.name,
        attempt=attempt,
        agent_name=name,
        agent=agent,
        upstream=dict(reads.upstream),
        fan_in={upstream: list(maps) for upstream, maps in reads.fan_in.items()},
        instance=unit.key if unit.key != task.name else None,
        item=unit.item,
        candidates=(
            {suffix_of(key): workflow.output_config_map(key) for key in unit.judged}
            if unit.judged
            else None
        ),
        supervise=unit.supervise,
        skipped=sorted(reads.skipped),
        api_key_env=API_KEY_ENV if agent.model.api_key_secret_ref else None,
        deadline_seconds=(
            task.timeout_seconds * TASK_DEADLINE_SHARE if task.timeout_seconds else None
        ),
        output=OutputTarget(
            config_map=workflow.output_config_map(unit.key),
            namespace=workflow.namespace,
            labels=workflow.task_labels(unit.key),
            owner_references=[workflow.owner_reference(block_owner_deletion=False)],
        ),
        cache_entry=cache_entry,
    )
    return CreateTask(
        task=unit.key,
        attempt=attempt,
        job_name=workflow.job_name(unit.key, attempt),
        task_input=task_input,
        service_account=workflow.task_identity(),
        spec_config_map=workflow.spec_config_map(),
        active_deadline_seconds=task.timeout_seconds,
        labels=workflow.attempt_labels(unit.key, attempt),
    )
