"""The contract between the operator and a task pod: what goes in, what comes out.

Task data stays in the pods. The operator hands a task only references: a
:class:`TaskInput` (which task, which Agent, the names of the ConfigMaps that
hold its upstream outputs, where to write its own) in the environment
variable ``INPUT_ENV``, and the spec the run started with (template and
inputs included) as the ConfigMap it recorded, mounted read-only. The pod
reads the upstream outputs itself, renders its prompt inside its own limits
and deadline, writes its output ConfigMap, and says how it went in a
:class:`TaskReport` on its termination message, which is all the operator
reads. A successful attempt also stamps its report on the output ConfigMap
(``REPORT_ANNOTATION``), so that the operator can read it by name, metadata
only, instead of listing pods. Both sides import these models, so the shape
cannot drift between them.
"""

from __future__ import annotations

import json
from typing import Any, Final

from pydantic import Field, ValidationError

from troupe_operator.api.agent import AgentSpec
from troupe_operator.api.cache import DIGEST_PATTERN, CacheTarget
from troupe_operator.api.candidates import MAX_CANDIDATES, CriterionScores
from troupe_operator.api.common import ApiModel, FailedCalls, ModelCalls, TokenUsage
from troupe_operator.api.supervise import SuperviseInput, TurnDecision
from troupe_operator.api.workflow import PREVIEW_CHARS, JsonObject

INPUT_ENV: Final = "TROUPE_TASK_INPUT"
"""Environment variable of a task container holding its :class:`TaskInput` as JSON."""

SPEC_KEY: Final = "spec.json"
"""Key of the recorded WorkflowSpec in the run's spec ConfigMap (and file name in its mount)."""

SPEC_MOUNT: Final = "/etc/troupe/spec"
"""Where a task container finds the run's spec ConfigMap, mounted read-only."""

OUTPUT_KEY: Final = "output"
"""Key of the task's output text in the output ConfigMap."""

RESULT_KEY: Final = "result.json"
"""Key of the :class:`TaskResult` (without the text) in the output ConfigMap."""

REPORT_ANNOTATION: Final = "troupe.dev/report"
"""Annotation on the output ConfigMap holding the writing attempt's TaskReport (as JSON)."""

ATTEMPT_ANNOTATION: Final = "troupe.dev/attempt"
"""Annotation on the output ConfigMap naming the attempt that wrote it."""

MAX_OUTPUT_BYTES: Final = 1_000_000
"""Largest output kept: a ConfigMap holds 1 MiB in all, keys and metadata included."""

MAX_PROMPT_CHARS: Final = 1_000_000
"""Largest rendered prompt a task sends; a template rendering beyond it fails its task."""

MAX_REPORT_BYTES: Final = 4096
"""Kubernetes keeps at most this much of a container's termination message."""

REPORT_MESSAGE_CHARS: Final = 300
"""Longest one-line message a report carries."""

EXIT_RETRYABLE: Final = 1
"""Exit code of a failure another attempt may cure (timeouts, 5xx, 429 after retries)."""

EXIT_PERMANENT: Final = 3
"""Exit code of a failure no retry can cure (bad key, bad request, a broken template)."""

SCRIPTED_MODEL_NAME: Final = "troupe-scripted (offline placeholder, not an LLM)"
"""How the offline scripted model names itself in outputs and status."""


MAX_COUNTED_LISTS: Final = 16
"""Most list lengths one report carries (the lists forEach tasks expand over)."""


class ItemRef(ApiModel):
    """Which item of which upstream list a forEach instance runs on."""

    task: str = Field(description="The upstream task whose JSON output holds the list.")
    path: list[str] = Field(min_length=1, description="Field path of the list in that JSON.")
    index: int = Field(ge=0, description="Position of this instance's item in the list.")


class OutputTarget(ApiModel):
    """Where the task writes its output inside the cluster."""

    config_map: str = Field(description="Name of the output ConfigMap to create or replace.")
    namespace: str = Field(description="Namespace of the output ConfigMap.")
    labels: dict[str, str] = Field(default_factory=dict, description="Labels to set on it.")
    owner_references: list[dict[str, Any]] = Field(
        default_factory=list,
        description="ownerReferences to set on it (the Workflow, without blockOwnerDeletion).",
    )


class TaskInput(ApiModel):
    """Everything a task pod needs besides the run's spec: references, never task data."""

    workflow: str = Field(description="Name of the Workflow.")
    namespace: str = Field(description="Namespace of the Workflow.")
    task: str = Field(description="Name of the task; its template is in the run's spec.")
    attempt: int = Field(ge=1, description="Attempt number, from 1.")
    agent_name: str = Field(description="Name of the Agent that runs the task.")
    agent: AgentSpec = Field(description="Spec of that Agent, as it was when the attempt started.")
    upstream: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Output ConfigMap of each task whose output this one reads, by task name: its "
            "direct dependencies and every task its prompt names."
        ),
    )
    fan_in: dict[str, list[str]] = Field(
        default_factory=dict,
        description=(
            "For each forEach task this one reads, the output ConfigMaps of its instances, in "
            "item order: {{ tasks.NAME.outputs }} lists them, {{ tasks.NAME.output }} joins them."
        ),
    )
    instance: str | None = Field(
        default=None,
        description="The status key of this instance (NAME.INDEX) when the task is a forEach's.",
    )
    item: ItemRef | None = Field(
        default=None, description="The item a forEach instance runs on ({{ item }})."
    )
    candidates: dict[str, str] | None = Field(
        default=None,
        max_length=MAX_CANDIDATES,
        description=(
            "For a judge: the output ConfigMap of each candidate it scores, by candidate-I, "
            "in order (the candidates that succeeded)."
        ),
    )
    supervise: SuperviseInput | None = Field(
        default=None,
        description=(
            "For a unit of a supervise task: a turn's earlier turns, or a delegation's "
            "instruction (agentName is then the supervisor's or the member's)."
        ),
    )
    skipped: list[str] = Field(
        default_factory=list,
        description=(
            "Tasks it reads that a condition skipped: their output renders as empty text and "
            "their json as none."
        ),
    )
    api_key_env: str | None = Field(
        default=None, description="Environment variable that holds the API key, if any."
    )
    deadline_seconds: float | None = Field(
        default=None, gt=0, description="Overall limit on the task's work, in seconds."
    )
    output: OutputTarget | None = Field(
        default=None, description="Output ConfigMap to write; None when writing to a file."
    )
    cache_entry: CacheTarget | None = Field(
        default=None,
        description="Also cache the output there once written (a memoized task's first run).",
    )


class TaskResult(ApiModel):
    """What a task produced, apart from the text itself."""

    model: str = Field(description="Model that produced the output.")
    scripted: bool = Field(
        default=False, description="True when the offline scripted model produced it."
    )
    usage: TokenUsage = Field(default_factory=TokenUsage, description="Tokens used by all calls.")
    calls: int = Field(default=0, ge=0, description="Model calls that succeeded.")
    latency_seconds: float = Field(default=0.0, ge=0, description="Time spent in model calls.")
    bytes: int = Field(default=0, ge=0, description="Size of the output in bytes.")
    failed_calls: FailedCalls = Field(
        default_factory=dict,
        description="Model calls that failed, by status (each failed try of a retried call).",
    )

    def model_calls(self) -> ModelCalls:
        """All the calls this attempt made, and the failed ones by status."""
        failed = sum(self.failed_calls.values())
        return ModelCalls(total=self.calls + failed, failed=self.failed_calls)


class TaskReport(ApiModel):
    """How an attempt went, in its container's termination message (at most 4 KiB).

    The operator reads this and nothing else of a task: the output stays in
    its ConfigMap. ``result`` is set on success, and on failure when the
    model was already called (the tokens were spent either way).
    """

    succeeded: bool = Field(description="Whether the attempt wrote its output.")
    message: str | None = Field(
        default=None, max_length=REPORT_MESSAGE_CHARS, description="One line: why it failed."
    )
    result: TaskResult | None = Field(default=None, description="Model, usage, calls and size.")
    preview: str | None = Field(
        default=None, max_length=PREVIEW_CHARS, description="The output's first characters."
    )
    fields: JsonObject | None = Field(
        default=None,
        description=(
            "On success, the fields of the structured output that the run's conditions read "
            "(at most MAX_CONDITION_JSON_BYTES as JSON)."
        ),
    )
    counts: dict[str, int] | None = Field(
        default=None,
        max_length=MAX_COUNTED_LISTS,
        description=(
            "On success, the length of each list in the structured output that a forEach "
            "expands over, by dotted field path."
        ),
    )
    scores: dict[str, CriterionScores] | None = Field(
        default=None,
        max_length=MAX_CANDIDATES,
        description=(
            "On a judge's success, its scores of each candidate (by candidate-I), in the order "
            "of the criteria: at most 10 x 10 numbers, each to 4 decimals."
        ),
    )
    decision: TurnDecision | None = Field(
        default=None,
        description="On success of a supervisor turn, its decision's shape (members, finished).",
    )
    digest: str | None = Field(
        default=None,
        pattern=DIGEST_PATTERN,
        description="On success, sha256 of the output text it wrote, hex: no task data.",
    )

    def encode(self) -> str:
        """The report as one compact JSON line, as the termination message holds it."""
        return json.dumps(self.to_wire(), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def decode(cls, text: str) -> TaskReport | None:
        """The report in a termination message; None when it holds something else."""
        try:
            return cls.model_validate_json(text.strip())
        except (ValidationError, ValueError):
            return None
