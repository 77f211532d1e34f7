"""The WorkflowTemplate kind: a Workflow's tasks and settings, kept to be run many times.

A template has the task schema of a Workflow's spec, every rule of it included (it is a
``WorkflowSpec``, checked by the same ``check_workflow``); its ``inputs`` are defaults that
a Workflow naming it (``workflowTemplateRef``) overrides by name. It has no status and the
operator never writes it: a template is only read, when a run that names it starts. It
refuses to name another template (no chains to resolve), to have no tasks, and a
``deadline`` (an absolute time would fail every run started after it; each Workflow gives
its own).
"""

from __future__ import annotations

from pydantic import ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from troupe_operator.api.workflow import MAX_TASKS, TaskSpec, WorkflowSpec


class WorkflowTemplateSpec(WorkflowSpec):
    """Tasks, default inputs and run settings that Workflows take by ``workflowTemplateRef``."""

    model_config = ConfigDict(json_schema_extra=None)  # tasks are required: no choice to make
    workflow_template_ref: SkipJsonSchema[None] = None  # a template names no other template
    deadline: SkipJsonSchema[None] = None  # an absolute time is one run's, never a template's
    inputs: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "The template's inputs and their default values ({{ inputs.NAME }}); a Workflow "
            "may override them by name, and may give no other."
        ),
    )
    tasks: list[TaskSpec] = Field(
        min_length=1, max_length=MAX_TASKS, description="The tasks; order does not matter."
    )
