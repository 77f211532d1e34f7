"""Turning "start attempt N of task T" into a complete CreateTask action.

The rendered prompt, the upstream outputs, the agent's spec and where to
write the result all travel in the TaskInput, so a task pod needs nothing
but its mounted input and its API key variable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from troupe_operator.api import AgentSpec, OutputTarget, TaskInput, TaskSpec, WorkflowSpec
from troupe_operator.templates import TemplateError, references, render
from troupe_operator.workflow.actions import CreateTask
from troupe_operator.workflow.naming import (
    attempt_labels,
    input_config_map_name,
    job_name,
    output_config_map_name,
    owner_reference,
)
from troupe_operator.workflow.observation import TaskOutput
from troupe_operator.workflow.timing import TASK_DEADLINE_SHARE

API_KEY_ENV: Final = "TROUPE_API_KEY"
"""The only place a task's API key appears: this environment variable of its process."""


@dataclass(frozen=True)
class WorkflowRef:
    """The Workflow whose task is launched."""

    namespace: str
    name: str
    uid: str


def create_task(
    workflow: WorkflowRef,
    spec: WorkflowSpec,
    task: TaskSpec,
    attempt: int,
    agent: AgentSpec,
    outputs: Mapping[str, TaskOutput],
) -> CreateTask:
    """The action starting ``attempt``; TemplateError if the prompt cannot be rendered."""
    upstream = _upstream_outputs(task, outputs)
    prompt = render(task.prompt, spec.inputs, upstream)
    labels = attempt_labels(workflow.name, task.name, attempt)
    output_config_map = output_config_map_name(workflow.name, task.name, attempt)
    task_input = TaskInput(
        workflow=workflow.name,
        namespace=workflow.namespace,
        task=task.name,
        attempt=attempt,
        agent_name=task.agent,
        agent=agent,
        prompt=prompt,
        upstream={name: upstream[name] for name in task.depends_on},
        api_key_env=API_KEY_ENV if agent.model.api_key_secret_ref else None,
        deadline_seconds=(
            task.timeout_seconds * TASK_DEADLINE_SHARE if task.timeout_seconds else None
        ),
        output=OutputTarget(
            config_map=output_config_map,
            namespace=workflow.namespace,
            labels=labels,
            owner_references=[owner_reference(workflow.name, workflow.uid)],
        ),
    )
    return CreateTask(
        task=task.name,
        attempt=attempt,
        job_name=job_name(workflow.name, task.name, attempt),
        input_config_map=input_config_map_name(workflow.name, task.name, attempt),
        output_config_map=output_config_map,
        task_input=task_input,
        agent_name=task.agent,
        agent=agent,
        active_deadline_seconds=task.timeout_seconds,
        labels=labels,
    )


def _upstream_outputs(task: TaskSpec, outputs: Mapping[str, TaskOutput]) -> dict[str, str]:
    """Outputs of the direct dependencies and of every task the prompt names."""
    needed = sorted(set(task.depends_on) | references(task.prompt).tasks)
    texts = {}
    for name in needed:
        output = outputs.get(name)
        if output is None:
            raise TemplateError(f"the output of upstream task '{name}' is missing")
        texts[name] = output.text
    return texts
