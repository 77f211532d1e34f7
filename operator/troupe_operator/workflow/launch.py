"""Turning "start attempt N of task T" into a complete CreateTask action.

What a task needs travels by reference: its Agent's spec, the names of the
ConfigMaps holding the outputs it reads, where to write its own. The
template and inputs are in the run's recorded spec, which the pod mounts. No
prompt is rendered and no output is read here: that happens in the pod,
inside its own limits.
"""

from __future__ import annotations

from typing import Final

from troupe_operator.api import AgentSpec, OutputTarget, TaskInput, TaskSpec
from troupe_operator.templates import references
from troupe_operator.workflow.actions import CreateTask
from troupe_operator.workflow.naming import WorkflowRef
from troupe_operator.workflow.timing import TASK_DEADLINE_SHARE

API_KEY_ENV: Final = "TROUPE_API_KEY"
"""The only place a task's API key appears: this environment variable of its process."""


def upstream_tasks(task: TaskSpec) -> list[str]:
    """The tasks whose output ``task`` reads: its dependencies and those its prompt names.

    The prompt was checked before the run started, so it parses.
    """
    return sorted(set(task.depends_on) | references(task.prompt).tasks)


def create_task(
    workflow: WorkflowRef,
    task: TaskSpec,
    attempt: int,
    agent: AgentSpec,
    skipped: frozenset[str] = frozenset(),
    agent_name: str | None = None,
) -> CreateTask:
    """The action starting ``attempt`` of ``task`` on ``agent``; ``skipped`` are the run's
    tasks a condition skipped, which have no output to read. ``agent_name`` is the Agent
    chosen for the attempt (``troupe_operator.workflow.selection``), by default the task's."""
    name = agent_name or task.agent
    if name is None:
        raise ValueError(f"no Agent chosen for task '{task.name}'")
    reads = upstream_tasks(task)
    task_input = TaskInput(
        workflow=workflow.name,
        namespace=workflow.namespace,
        task=task.name,
        attempt=attempt,
        agent_name=name,
        agent=agent,
        upstream={name: workflow.output_config_map(name) for name in reads if name not in skipped},
        skipped=sorted(skipped.intersection(reads)),
        api_key_env=API_KEY_ENV if agent.model.api_key_secret_ref else None,
        deadline_seconds=(
            task.timeout_seconds * TASK_DEADLINE_SHARE if task.timeout_seconds else None
        ),
        output=OutputTarget(
            config_map=workflow.output_config_map(task.name),
            namespace=workflow.namespace,
            labels=workflow.task_labels(task.name),
            owner_references=[workflow.owner_reference(block_owner_deletion=False)],
        ),
    )
    return CreateTask(
        task=task.name,
        attempt=attempt,
        job_name=workflow.job_name(task.name, attempt),
        task_input=task_input,
        service_account=workflow.task_identity(),
        spec_config_map=workflow.spec_config_map(),
        active_deadline_seconds=task.timeout_seconds,
        labels=workflow.attempt_labels(task.name, attempt),
    )
