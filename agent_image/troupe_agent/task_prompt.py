"""What a task sends the model: its prompt, rendered in the pod within limits, and the
upstream outputs the prompt does not place itself.

Each upstream output reaches the model once. An output the template names
(``{{ tasks.NAME.output }}``) is sent where the template puts it and nowhere
else; the outputs of direct dependencies the template does not name go under
"Material from earlier steps" (:func:`~troupe_agent.prompts.task_message`).

Rendering is bounded so that a hostile template costs only its own task: the
sandbox caps the prompt at ``MAX_PROMPT_CHARS`` and refuses values too big to
build (:mod:`troupe_operator.templates`); here the render also gets
``RENDER_SECONDS`` (never past the task deadline) and ``RENDER_MEMORY_BYTES``
of address space (:mod:`troupe_agent.render_limits`). Hitting a limit is
permanent (the same template fails the same way next time) and says which
limit in one line; only running out of *task deadline* is retryable.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

from troupe_agent.failures import TaskFailed
from troupe_agent.prompts import TaskPrompt
from troupe_agent.render_limits import TimeLimitExceeded, memory_limit, time_limit
from troupe_agent.retry import Deadline
from troupe_operator.api import EXIT_PERMANENT, EXIT_RETRYABLE, ItemRef, TaskSpec, WorkflowSpec
from troupe_operator.expressions import lookup
from troupe_operator.templates import RenderValues, TemplateError, references, render

RENDER_SECONDS: Final = 10.0
"""Longest a prompt template may take to render."""

RENDER_MEMORY_BYTES: Final = 256 * 2**20
"""Most address space a render may add to the process."""


def render_values(
    spec: WorkflowSpec,
    outputs: Mapping[str, str],
    output_lists: Mapping[str, Sequence[str]],
    item: ItemRef | None,
) -> RenderValues:
    """What the prompt may read: ``outputs`` by task name (a forEach task's joined, see
    :func:`~troupe_operator.templates.join_outputs`), ``output_lists`` each forEach task's
    outputs one by one, the JSON of those with an ``outputSchema`` (a list for a forEach
    task), and a forEach instance's ``item``, taken from the upstream JSON it names."""
    schemas = {task.name for task in spec.tasks if task.output_schema is not None}
    json_outputs: dict[str, Any] = {}
    for name in schemas & outputs.keys():
        if name in output_lists:
            json_outputs[name] = [_decoded(name, text) for text in output_lists[name]]
        elif outputs[name]:  # a skipped task's empty output is none
            json_outputs[name] = _decoded(name, outputs[name])
    if item is None:
        return RenderValues(outputs, json_outputs, output_lists)
    listed = lookup(json_outputs.get(item.task), tuple(item.path))
    if not isinstance(listed, list) or item.index >= len(listed):
        raise TaskFailed(
            f"forEach item {item.index} of tasks.{item.task}.json.{'.'.join(item.path)} is not "
            "in that task's output",
            EXIT_PERMANENT,
        )
    return RenderValues(outputs, json_outputs, output_lists, listed[item.index], has_item=True)


def _decoded(task: str, text: str) -> Any:
    """An upstream output whose task has an ``outputSchema``: JSON this run's task checked;
    anything else is permanent."""
    try:
        return json.loads(text)
    except ValueError as error:
        raise TaskFailed(
            f"the output of upstream task '{task}' is not the JSON its outputSchema "
            f"promises: {error}",
            EXIT_PERMANENT,
        ) from error


def build_task_prompt(
    task: TaskSpec, inputs: Mapping[str, str], values: RenderValues, deadline: Deadline
) -> TaskPrompt:
    """The task's rendered prompt and the material it leaves out."""
    try:
        placed = references(task.prompt).tasks
    except TemplateError as error:
        raise TaskFailed(f"prompt template: {error}", EXIT_PERMANENT) from error
    outputs = values.outputs
    missing = sorted((placed | set(task.depends_on)) - outputs.keys())
    if missing:
        names = ", ".join(f"'{name}'" for name in missing)
        raise TaskFailed(
            f"the task input names no output ConfigMap for upstream task {names}", EXIT_PERMANENT
        )
    text = render_prompt(task.prompt, inputs, values, deadline)
    material = {
        name: outputs[name] for name in task.depends_on if name not in placed and outputs[name]
    }
    return TaskPrompt(text=text, material=material)


def render_prompt(
    template: str, inputs: Mapping[str, str], values: RenderValues, deadline: Deadline
) -> str:
    """The rendered template, within the time and memory a render may use (main thread only)."""
    budget = deadline.call_timeout(RENDER_SECONDS)
    if budget <= 0:
        raise TaskFailed("the task deadline passed before the prompt was rendered", EXIT_RETRYABLE)
    try:
        with time_limit(budget), memory_limit(RENDER_MEMORY_BYTES):
            return render(template, inputs, values)
    except TemplateError as error:
        raise TaskFailed(str(error), EXIT_PERMANENT) from error
    except MemoryError as error:
        raise TaskFailed(
            f"prompt template needed more than the {RENDER_MEMORY_BYTES // 2**20} MiB of memory "
            "a render may use (RENDER_MEMORY_BYTES)",
            EXIT_PERMANENT,
        ) from error
    except TimeLimitExceeded as error:
        if budget < RENDER_SECONDS:
            raise TaskFailed(
                f"the task deadline passed while rendering the prompt ({budget:.3g} s were left)",
                EXIT_RETRYABLE,
            ) from error
        raise TaskFailed(
            f"prompt template took longer than {RENDER_SECONDS:g} s to render (RENDER_SECONDS)",
            EXIT_PERMANENT,
        ) from error
