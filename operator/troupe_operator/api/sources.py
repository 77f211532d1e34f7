"""Where a Workflow's spec comes from besides itself: a WorkflowTemplate, ConfigMap and Secret keys.

A Workflow may name a WorkflowTemplate instead of listing tasks, and take inputs from keys
of ConfigMaps and Secrets in its namespace (``inputsFrom``). The operator resolves all of it
once, when the run starts, and records the result as the run's spec; status says what the
run was resolved from (``ResolvedFrom``), so editing or deleting a template or a ConfigMap
later changes no running Workflow.

A ConfigMap's value is copied into the recorded spec (it is configuration, like the spec).
A Secret's value never is: the recorded spec keeps the reference, and each task pod gets
the value from the kubelet as an environment variable (:func:`secret_input_env`), as it
gets its API key. So the operator never holds the value, and status, Events, logs and
metrics cannot show it. This module refuses nothing beyond the shapes: which names exist,
and whether the keys do, is for resolution (``troupe_operator.resolution``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Final, Self

from pydantic import ConfigDict, Field, model_validator

from troupe_operator.api.common import ApiModel, DnsSubdomain

MAX_INPUTS_FROM: Final = 32
"""Most inputs one Workflow (or WorkflowTemplate) takes from ConfigMaps and Secrets: each is a
read when its run starts, and each Secret input an environment variable of every task pod."""
INPUT_NAME_PATTERN: Final = r"^[A-Za-z_][A-Za-z0-9_-]*$"
"""An input name a prompt can write as ``{{ inputs.NAME }}``."""
SECRET_INPUT_ENV_PREFIX: Final = "TROUPE_SECRET_INPUT_"
"""Task pods receive the n-th Secret input of their run's spec as ``TROUPE_SECRET_INPUT_<n>``."""


def secret_input_env(index: int) -> str:
    """The environment variable that carries a run's ``index``-th Secret input into a pod."""
    return f"{SECRET_INPUT_ENV_PREFIX}{index}"


class WorkflowTemplateRef(ApiModel):
    """A WorkflowTemplate in the Workflow's namespace."""

    name: DnsSubdomain = Field(description="Name of the WorkflowTemplate.")


class KeyRef(ApiModel):
    """One key of a ConfigMap or Secret in the Workflow's namespace."""

    name: DnsSubdomain = Field(description="Name of the ConfigMap or Secret.")
    key: str = Field(
        min_length=1,
        max_length=253,
        pattern=r"^[-._a-zA-Z0-9]+$",
        description="The key whose value is the input's.",
    )


class InputFrom(ApiModel):
    """An input whose value is a key of a ConfigMap or of a Secret."""

    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [{"required": ["configMapKeyRef"]}, {"required": ["secretKeyRef"]}]
        }
    )

    name: str = Field(
        min_length=1,
        max_length=63,
        pattern=INPUT_NAME_PATTERN,
        description="The input's name, as prompts use it: {{ inputs.NAME }}.",
    )
    config_map_key_ref: KeyRef | None = Field(
        default=None,
        description=("A ConfigMap key: read when the run starts and recorded with the run's spec."),
    )
    secret_key_ref: KeyRef | None = Field(
        default=None,
        description=(
            "A Secret key: the operator never reads the value; each task pod gets it as an "
            "environment variable. Conditions (when) cannot read such an input."
        ),
    )

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.config_map_key_ref is None) == (self.secret_key_ref is None):
            raise ValueError(
                f"input '{self.name}': give exactly one of configMapKeyRef and secretKeyRef"
            )
        return self


def secret_inputs(sources: Iterable[InputFrom]) -> Iterator[tuple[str, InputFrom]]:
    """Each Secret input of a spec with the environment variable it reaches a pod in."""
    secrets = (source for source in sources if source.secret_key_ref is not None)
    for index, source in enumerate(secrets):
        yield secret_input_env(index), source


class TemplatePin(ApiModel):
    """The WorkflowTemplate a run was resolved from, as it was when the run started."""

    name: str = Field(description="Name of the WorkflowTemplate.")
    uid: str | None = Field(default=None, description="Its uid: the object, not just the name.")
    resource_version: str | None = Field(
        default=None, description="Its resourceVersion when it was read."
    )
    generation: int | None = Field(
        default=None, ge=0, description="Its metadata.generation when it was read."
    )


class ResolvedFrom(ApiModel):
    """What a run's spec was resolved from when it started, recorded with the run."""

    workflow_spec_hash: str = Field(
        max_length=64,
        description=(
            "Hash of the Workflow's own spec (workflowTemplateRef, inputs, inputsFrom) the run "
            "was resolved from; an edit of it mid-run is refused like any spec change."
        ),
    )
    workflow_template: TemplatePin | None = Field(
        default=None, description="The WorkflowTemplate, if the Workflow names one."
    )
