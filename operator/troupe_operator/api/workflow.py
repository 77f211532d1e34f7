"""The Workflow kind: a DAG of agent tasks and the status that tracks its run.

Status is kept compact on purpose (Argo's workflows outgrow etcd's ~1.5 MB
object limit): task outputs live in ConfigMaps and status holds a reference
and a short preview of each.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Self

from pydantic import AwareDatetime, ConfigDict, Field, WithJsonSchema, model_validator

from troupe_operator.api.cache import DIGEST_PATTERN, Cache, CachedFrom
from troupe_operator.api.candidates import (
    MAX_CANDIDATES,
    Candidates,
    CandidateStatus,
    CriterionScores,
)
from troupe_operator.api.common import ApiModel, Condition, DnsLabel, ModelCalls, TokenUsage
from troupe_operator.api.scheduling import Priority, TaskWaiting
from troupe_operator.api.selector import MAX_FALLBACK_AGENTS, AgentSelector
from troupe_operator.api.sources import (
    MAX_INPUTS_FROM,
    InputFrom,
    ResolvedFrom,
    WorkflowTemplateRef,
)
from troupe_operator.api.supervise import Supervise, SuperviseStatus, TurnDecision

MAX_TASKS: Final = 1000
MAX_RETRIES: Final = 10
MAX_TEMPLATE_CHARS: Final = 65_536
"""Most characters of one prompt template; what it renders to is bounded in the task pod."""
PREVIEW_CHARS: Final = 200
MAX_WHEN_CHARS: Final = 1024
"""Longest ``when`` condition (``troupe_operator.expressions.MAX_EXPRESSION_CHARS``)."""
MAX_CONDITION_JSON_BYTES: Final = 512
"""Most bytes (compact JSON) of the fields of one task's structured output that conditions
read: the task's report carries them to the operator (in a 4,096-byte termination message)
and status keeps them, so they must stay small; conditions test flags, numbers and short
names, not documents."""

MAX_FOR_EACH_ITEMS: Final = 100
"""Most instances one ``forEach`` may expand to: each is a Job, a ConfigMap and a status entry."""
INSTANCE_SEPARATOR: Final = "."
"""Joins a task's name and an instance's suffix in status keys and labels (``research.0``);
task names are DNS labels, which have no dots, so an instance never collides with a task."""


def instance_key(task: str, suffix: int | str) -> str:
    """The status key (and ``troupe.dev/task`` label) of one unit of ``task``: an item's
    index, a candidate's label, ``judge``."""
    return f"{task}{INSTANCE_SEPARATOR}{suffix}"


JsonObject = Annotated[
    dict[str, Any],
    WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True}),
]
"""A free-form JSON object (a JSON Schema, or values decoded from a task's JSON output)."""


class ForEach(ApiModel):
    """Run a task once per item of a list that an upstream task's structured output holds."""

    from_: str = Field(
        alias="from",
        min_length=1,
        max_length=MAX_WHEN_CHARS,
        pattern=r"^tasks\.[a-z0-9]([-a-z0-9]*[a-z0-9])?\.json(\.[A-Za-z_][A-Za-z0-9_-]*)+$",
        description=(
            "The list to expand over, as tasks.NAME.json.FIELD of an upstream task with an "
            "outputSchema; each instance sees its item as {{ item }}."
        ),
    )
    max_items: int = Field(
        default=20,
        ge=1,
        le=MAX_FOR_EACH_ITEMS,
        description="Most items; a longer list fails the task (reason TooManyItems).",
    )
    parallelism: int | None = Field(
        default=None,
        ge=1,
        le=MAX_FOR_EACH_ITEMS,
        description="Most instances running at once; unlimited (within the run's) if unset.",
    )

    @property
    def list_task(self) -> str:
        """The upstream task whose JSON holds the list (``from`` matched its pattern)."""
        return self.from_.split(".")[1]

    @property
    def list_path(self) -> tuple[str, ...]:
        """The field path of the list in that task's JSON (field names have no dots)."""
        return tuple(self.from_.split(".")[3:])

    @property
    def count_key(self) -> str:
        """How reports and status name the list's length: its field path, dotted."""
        return ".".join(self.list_path)


class TaskSpec(ApiModel):
    """One step of a Workflow: an Agent run on a rendered prompt."""

    name: DnsLabel = Field(description="Task name, unique in the Workflow (DNS-1123 label).")
    agent: DnsLabel | None = Field(
        default=None,
        description=(
            "Name of an Agent in the Workflow's namespace; or give agentSelector (a supervise "
            "task has none)."
        ),
    )
    agent_selector: AgentSelector | None = Field(
        default=None,
        description=(
            "Instead of agent: run on the best Agent of the namespace that has every skill "
            "and label asked for, chosen when each attempt starts."
        ),
    )
    fallback_agents: list[DnsLabel] = Field(
        default_factory=list,
        max_length=MAX_FALLBACK_AGENTS,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description=(
            "Agents for the retries: attempt N (N >= 2) runs on the (N-1)th, the last one for "
            "any attempt beyond the list."
        ),
    )
    prompt: str = Field(
        min_length=1,
        max_length=MAX_TEMPLATE_CHARS,
        pattern=r"\S",
        description=(
            "Prompt template. It may use {{ inputs.NAME }} and {{ tasks.NAME.output }} "
            "for any task this one depends on, directly or not."
        ),
    )
    depends_on: list[DnsLabel] = Field(
        default_factory=list, max_length=MAX_TASKS, description="Tasks that must succeed first."
    )
    retries: int = Field(
        default=0,
        ge=0,
        le=MAX_RETRIES,
        description="Further attempts after a failed one, with backoff.",
    )
    timeout_seconds: int | None = Field(
        default=None, ge=1, le=86_400, description="Limit on one attempt (activeDeadlineSeconds)."
    )
    output_schema: JsonObject | None = Field(
        default=None,
        description=(
            "A JSON Schema (type object) the task's output must match: the model is asked for "
            "JSON, a reply that does not match is a retryable failure, and the JSON is "
            "addressable as {{ tasks.NAME.json.FIELD }} and in conditions."
        ),
    )
    when: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_WHEN_CHARS,
        description=(
            "A condition over inputs and upstream JSON, e.g. 'tasks.triage.json.deep == "
            "true'; false skips the task (reason ConditionFalse) and what depends only on "
            "skipped tasks."
        ),
    )
    for_each: ForEach | None = Field(
        default=None,
        description=(
            "Expand the task at run time into one instance per item of an upstream list "
            "(NAME.0, NAME.1, ...); tasks downstream read all instances' outputs."
        ),
    )
    candidates: Candidates | None = Field(
        default=None,
        description=(
            "Run the prompt as several candidates (NAME.candidate-1, ...), then a judge "
            "(NAME.judge) that scores them; the task's output is the best one's."
        ),
    )
    supervise: Supervise | None = Field(
        default=None,
        description=(
            "Run the task as a supervisor loop instead of on one agent: the supervisor Agent "
            "delegates steps to member Agents turn by turn until it finishes with the answer, "
            "which is the task's output."
        ),
    )
    priority: Priority | None = Field(
        default=None,
        description=(
            "Among ready tasks held back by a limit, higher starts first (-1000 to 1000); "
            "the Workflow's priority if unset."
        ),
    )
    cache: Cache | None = Field(
        default=None,
        description=(
            "Serve the task from an earlier output of the same cache key in this namespace "
            "(no Job, 0 tokens); overrides the Workflow's cache, enabled: false turns it off."
        ),
    )

    def named_agents(self) -> list[str]:
        """The Agents the spec names for this task: its agent, a supervise task's supervisor
        and members, a candidates task's candidates' and judge's."""
        if self.supervise is not None:
            return [self.supervise.agent, *self.supervise.members]
        named = [self.agent] if self.agent else []
        if self.candidates is not None:
            named += [*(self.candidates.agents or []), self.candidates.judge.agent]
        return list(dict.fromkeys(named))


class WorkflowSpec(ApiModel):
    """A DAG of tasks, its inputs and how it is run; or a WorkflowTemplate to take them from.

    The operator runs only resolved specs: tasks, no ``workflowTemplateRef``, and
    ``inputsFrom`` reduced to Secret inputs (``troupe_operator.resolution``).
    """

    model_config = ConfigDict(
        # Exactly one of tasks and workflowTemplateRef, in the CRD's schema as in the model.
        json_schema_extra={
            "oneOf": [{"required": ["tasks"]}, {"required": ["workflowTemplateRef"]}]
        }
    )

    workflow_template_ref: WorkflowTemplateRef | None = Field(
        default=None,
        description=(
            "Run the tasks of this WorkflowTemplate (instead of giving tasks), resolved once "
            "when the run starts; inputs override the template's defaults."
        ),
    )
    inputs: dict[str, str] = Field(
        default_factory=dict, description="Named values the prompts use as {{ inputs.NAME }}."
    )
    inputs_from: list[InputFrom] = Field(
        default_factory=list,
        max_length=MAX_INPUTS_FROM,
        description="Inputs whose values are keys of ConfigMaps or Secrets in the namespace.",
    )
    tasks: list[TaskSpec] = Field(
        default_factory=list,
        max_length=MAX_TASKS,
        json_schema_extra={"minItems": 1},  # when given; checked below, as the default is []
        description="The tasks; order does not matter. Required unless workflowTemplateRef.",
    )
    parallelism: int | None = Field(
        default=None,
        ge=1,
        le=MAX_TASKS,
        description="Most tasks running at once; unlimited if unset.",
    )
    fail_fast: bool = Field(
        default=False,
        description=(
            "Stop running tasks and start no more once a task has failed for good. "
            "Otherwise independent branches run on and the Workflow fails at the end."
        ),
    )
    timeout_seconds: int | None = Field(
        default=None, ge=1, le=604_800, description="Limit on the whole run, in seconds."
    )
    retry_backoff_seconds: int = Field(
        default=10,
        ge=0,
        le=3600,
        description="Wait before a retry; doubles for each further attempt, up to 10 min.",
    )
    priority: Priority | None = Field(
        # None, not 0: a default would enter the hash of every spec that gives none, and a
        # run started before this field existed would no longer match its recorded spec.
        default=None,
        description=(
            "Higher first (-1000 to 1000; 0 if unset): the default of its tasks' priority, and "
            "its place among the Workflows waiting for a Tenant's free slots."
        ),
    )
    deadline: AwareDatetime | None = Field(
        default=None,
        description=(
            "An absolute time (RFC 3339): once passed, the run fails with reason "
            "DeadlineExceeded and its running tasks are stopped."
        ),
    )
    cache: Cache | None = Field(
        default=None,
        description=(
            "Memoize every task (a task's own cache overrides it): a task whose cache key "
            "matches an output of this namespace younger than maxAge succeeds from it."
        ),
    )

    @model_validator(mode="after")
    def _tasks_or_template(self) -> Self:
        if "tasks" in self.model_fields_set and not self.tasks:
            raise ValueError("tasks: give at least one task (or a workflowTemplateRef instead)")
        if self.workflow_template_ref is None and not self.tasks:
            raise ValueError("give tasks, or a workflowTemplateRef to take them from")
        if self.workflow_template_ref is not None and self.tasks:
            raise ValueError(
                "give tasks or a workflowTemplateRef, not both: the template's tasks are the run's"
            )
        return self


def counted_lists(spec: WorkflowSpec, task: str) -> dict[str, tuple[str, ...]]:
    """The lists in ``task``'s JSON output whose lengths the run's forEach tasks need, by
    count key: its pod reports them (``TaskReport.counts``) so the operator can expand them."""
    return {
        other.for_each.count_key: other.for_each.list_path
        for other in spec.tasks
        if other.for_each is not None and other.for_each.list_task == task
    }


class WorkflowPhase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    ERROR = "Error"


class TaskPhase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    RETRYING = "Retrying"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SKIPPED = "Skipped"
    CANCELLED = "Cancelled"


class OutputRef(ApiModel):
    """Where a task's full output is kept."""

    config_map: str = Field(description="ConfigMap in the Workflow's namespace.")
    key: str = Field(default="output", description="Key of the output within the ConfigMap.")
    bytes: int | None = Field(
        default=None, ge=0, description="Size of the output in bytes, when its task reported it."
    )


class TaskStatus(ApiModel):
    """What the operator observed of one task."""

    phase: TaskPhase = Field(default=TaskPhase.PENDING, description="The task's phase.")
    attempts: int = Field(default=0, ge=0, description="Attempts started so far.")
    job: str | None = Field(default=None, description="The Job of the latest attempt.")
    agents: list[str] | None = Field(
        default=None,
        max_length=MAX_RETRIES + 1,
        description="The Agent of each attempt, in order, recorded when the attempt starts.",
    )
    started_at: datetime | None = Field(default=None, description="When the first attempt started.")
    finished_at: datetime | None = Field(
        default=None, description="When the task ended, or its latest attempt failed."
    )
    message: str | None = Field(default=None, description="Why the task is in this phase.")
    reason: str | None = Field(
        default=None,
        max_length=64,
        description="Why, as a CamelCase word: ConditionFalse for a task skipped by a condition.",
    )
    model: str | None = Field(default=None, description="Model that produced the output.")
    output: OutputRef | None = Field(default=None, description="Reference to the full output.")
    preview: str | None = Field(
        default=None, max_length=PREVIEW_CHARS, description="The output's first characters."
    )
    usage: TokenUsage | None = Field(default=None, description="Tokens this task used.")
    calls: ModelCalls | None = Field(
        default=None, description="Model calls its attempts made, and the failed ones by status."
    )
    fields: JsonObject | None = Field(
        default=None,
        description=(
            "The fields of the task's structured output that conditions read (at most 512 "
            "bytes as JSON); the whole JSON is its output."
        ),
    )
    counts: dict[str, int] | None = Field(
        default=None,
        description=(
            "Lengths of the lists in the task's structured output that forEach expands over, "
            "by field path (e.g. topics)."
        ),
    )
    result_of: str | None = Field(
        default=None,
        description=(
            "The instance whose output is this task's output (a supervisor's final turn, the "
            "winning candidate); tasks downstream read that one."
        ),
    )
    retry_base: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Attempts made before the run was last retried; the task's retries count from here."
        ),
    )
    items: int | None = Field(
        default=None,
        ge=0,
        description=(
            "A forEach task's expansion, recorded once: how many instances it runs "
            "(NAME.0 to NAME.<items-1>, each with its own entry in tasks)."
        ),
    )
    candidates: list[CandidateStatus] | None = Field(
        default=None,
        max_length=MAX_CANDIDATES,
        description=(
            "A candidates task's candidates, recorded when it starts; their tokens, scores "
            "and score once judged (resultOf names the winner)."
        ),
    )
    scores: dict[str, CriterionScores] | None = Field(
        default=None,
        max_length=MAX_CANDIDATES,
        description=(
            "A judge's scores of each candidate it judged (by candidate-I), in the order of "
            "the criteria."
        ),
    )
    supervise: SuperviseStatus | None = Field(
        default=None,
        description=(
            "A supervise task's loop, recorded as it goes: the iteration count and each turn "
            "with its decision (turns and delegations have their own entries in tasks)."
        ),
    )
    decision: TurnDecision | None = Field(
        default=None,
        description="A supervisor turn's decision as its report told it (members, finished).",
    )
    waiting: TaskWaiting | None = Field(
        default=None,
        description="Set while the task is ready but held back: why, since when, its priority.",
    )
    digest: str | None = Field(
        default=None,
        pattern=DIGEST_PATTERN,
        description="sha256 of the output text, as its pod reported it (the cache keys use it).",
    )
    cached: CachedFrom | None = Field(
        default=None,
        description="Set when the task was served from the cache: the entry, key and its age.",
    )


class WorkflowStatus(ApiModel):
    """What the operator observed of a Workflow's run."""

    phase: WorkflowPhase | None = Field(
        default=None, description="Pending, Running, Succeeded, Failed, or Error (invalid spec)."
    )
    progress: str | None = Field(default=None, description="Succeeded tasks / all tasks, e.g. 3/5.")
    started_at: datetime | None = Field(default=None, description="When the first task started.")
    finished_at: datetime | None = Field(default=None, description="When the run ended.")
    duration: str | None = Field(
        default=None, description="Run time so far, or in all once finished, e.g. 1m05s."
    )
    message: str | None = Field(default=None, description="Why the Workflow is in this phase.")
    tasks: dict[str, TaskStatus] = Field(default_factory=dict, description="Status of each task.")
    usage: TokenUsage | None = Field(default=None, description="Tokens used by all tasks.")
    observed_generation: int | None = Field(
        default=None, ge=0, description="The metadata.generation last acted on."
    )
    spec_hash: str | None = Field(
        default=None,
        max_length=64,
        description="Hash of the spec the run started with; later spec changes are refused.",
    )
    resolved_from: ResolvedFrom | None = Field(
        default=None,
        description=(
            "What the run's spec was resolved from when it started (a WorkflowTemplate, "
            "inputs from ConfigMaps or Secrets); later changes to those change nothing."
        ),
    )
    conditions: list[Condition] = Field(
        default_factory=list, description="Ready, Succeeded, Failed and SpecChangeRefused."
    )
    retries: int = Field(
        default=0, ge=0, description="Times the run was retried after it failed (troupe retry)."
    )
    retry_request: str | None = Field(
        default=None,
        max_length=256,
        description="The last troupe.dev/retry request the operator answered (done or refused).",
    )
