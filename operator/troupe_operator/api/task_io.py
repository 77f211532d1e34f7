"""The contract between the operator and a task pod: what goes in, what comes out.

The operator writes a :class:`TaskInput` as JSON into the task's input
ConfigMap; the agent runtime's task mode reads it, runs the agent and writes a
:class:`TaskResult` into the output ConfigMap (or a file, when run locally).
Both sides import these models, so the shape cannot drift between them.
"""

from __future__ import annotations

from typing import Any, Final

from pydantic import Field

from troupe_operator.api.agent import AgentSpec
from troupe_operator.api.common import ApiModel, TokenUsage

INPUT_KEY: Final = "input.json"
"""Key of the task input in the input ConfigMap (and file name in its mount)."""

OUTPUT_KEY: Final = "output"
"""Key of the task's output text in the output ConfigMap."""

RESULT_KEY: Final = "result.json"
"""Key of the :class:`TaskResult` (without the text) in the output ConfigMap."""

MAX_OUTPUT_BYTES: Final = 1_000_000
"""Largest output kept: a ConfigMap holds 1 MiB in all, keys and metadata included."""

EXIT_RETRYABLE: Final = 1
"""Exit code of a failure another attempt may cure (timeouts, 5xx, 429 after retries)."""

EXIT_PERMANENT: Final = 3
"""Exit code of a failure no retry can cure (bad key, bad request); the Job fails at once."""

SCRIPTED_MODEL_NAME: Final = "troupe-scripted (offline placeholder, not an LLM)"
"""How the offline scripted model names itself in outputs and status."""


class OutputTarget(ApiModel):
    """Where the task writes its result inside the cluster."""

    config_map: str = Field(description="Name of the output ConfigMap to create.")
    namespace: str = Field(description="Namespace of the output ConfigMap.")
    labels: dict[str, str] = Field(default_factory=dict, description="Labels to set on it.")
    owner_references: list[dict[str, Any]] = Field(
        default_factory=list, description="ownerReferences to set on it (the Workflow)."
    )


class TaskInput(ApiModel):
    """Everything a task pod needs, mounted read-only as JSON."""

    workflow: str = Field(description="Name of the Workflow.")
    namespace: str = Field(description="Namespace of the Workflow.")
    task: str = Field(description="Name of the task.")
    attempt: int = Field(ge=1, description="Attempt number, from 1.")
    agent_name: str = Field(description="Name of the Agent that runs the task.")
    agent: AgentSpec = Field(description="Spec of that Agent.")
    prompt: str = Field(description="The rendered prompt.")
    upstream: dict[str, str] = Field(
        default_factory=dict, description="Outputs of the tasks this one depends on, by name."
    )
    api_key_env: str | None = Field(
        default=None, description="Environment variable that holds the API key, if any."
    )
    deadline_seconds: float | None = Field(
        default=None, gt=0, description="Overall limit on the task's model work, in seconds."
    )
    output: OutputTarget | None = Field(
        default=None, description="Output ConfigMap to write; None when writing to a file."
    )


class TaskResult(ApiModel):
    """What a task produced, apart from the text itself."""

    model: str = Field(description="Model that produced the output.")
    scripted: bool = Field(
        default=False, description="True when the offline scripted model produced it."
    )
    usage: TokenUsage = Field(default_factory=TokenUsage, description="Tokens used by all calls.")
    calls: int = Field(default=0, ge=0, description="Model calls made.")
    latency_seconds: float = Field(default=0.0, ge=0, description="Time spent in model calls.")
    bytes: int = Field(default=0, ge=0, description="Size of the output in bytes.")
