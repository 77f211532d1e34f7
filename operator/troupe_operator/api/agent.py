"""The Agent kind: one LLM role with its model, prompt and footprint.

An Agent is used two ways: a Workflow task names it and runs it in a Job, and
with ``replicas > 0`` it also runs as long-lived pods that elect a supervisor.
An Agent of role supervisor with ``members`` is a team: its pods delegate
each invocation to those Agents, turn by turn. The per-role defaults live
here, next to the fields they fill in.

Two writers share an Agent's status: the operator writes what it observes of
the Deployment and the members, and the pod elected supervisor writes what
only it sees (who holds the Lease, whether the model answers, call
statistics). The field descriptions say whose each field is.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Final

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from troupe_operator.api.common import (
    ApiModel,
    Condition,
    DnsSubdomain,
    Quantity,
)

MAX_MEMBERS: Final = 16
MAX_ITERATIONS: Final = 50
MAX_AGENT_CONCURRENCY: Final = 1000
"""Most task attempts one Agent may cap itself at (``model.maxConcurrency``)."""


class Role(StrEnum):
    RESEARCHER = "researcher"
    PLANNER = "planner"
    EXECUTOR = "executor"
    REVIEWER = "reviewer"
    SUPERVISOR = "supervisor"
    CUSTOM = "custom"


@dataclass(frozen=True)
class RoleDefaults:
    """What an Agent of a role gets for every model setting it leaves out."""

    temperature: float
    max_tokens: int
    system_prompt: str
    self_review: bool


ROLE_DEFAULTS: Final[dict[Role, RoleDefaults]] = {
    Role.RESEARCHER: RoleDefaults(
        temperature=0.3,
        max_tokens=1500,
        self_review=False,
        system_prompt=(
            "You are a careful researcher. Gather the facts that bear on the task, "
            "say where each one comes from, separate what is known from what is "
            "assumed, and end with the open questions that matter most."
        ),
    ),
    Role.PLANNER: RoleDefaults(
        temperature=0.5,
        max_tokens=2000,
        self_review=False,
        system_prompt=(
            "You are a planner. Turn the goal and the material you are given into "
            "a numbered plan of concrete steps, each with its owner, its inputs, "
            "its done-criterion and the risks that could stop it."
        ),
    ),
    Role.EXECUTOR: RoleDefaults(
        temperature=0.4,
        max_tokens=1800,
        self_review=False,
        system_prompt=(
            "You are an executor. Carry out the task exactly as specified using the "
            "material you are given, produce the finished artefact rather than a "
            "description of it, and state any step you could not complete."
        ),
    ),
    Role.REVIEWER: RoleDefaults(
        temperature=0.2,
        max_tokens=1200,
        self_review=True,
        system_prompt=(
            "You are a reviewer. Check the work you are given against the task: "
            "list every error, gap and unsupported claim with its location, rate "
            "the work as accept, revise or reject, and say why in one sentence."
        ),
    ),
    Role.SUPERVISOR: RoleDefaults(
        temperature=0.2,
        max_tokens=1200,
        self_review=False,
        system_prompt=(
            "You are a supervisor of a team of agents. Decide which member should "
            "act next and on what, merge their results into one answer, and flag "
            "any conflict between them that a person must settle."
        ),
    ),
    Role.CUSTOM: RoleDefaults(
        temperature=0.7,
        max_tokens=1500,
        self_review=False,
        system_prompt="You are a helpful assistant. Complete the task you are given.",
    ),
}


class SecretKeyRef(ApiModel):
    """A key of a Secret in the Agent's namespace."""

    name: DnsSubdomain = Field(description="Name of the Secret.")
    key: str = Field(
        default="api-key",
        min_length=1,
        max_length=253,
        pattern=r"^[-._a-zA-Z0-9]+$",
        description="Key within the Secret whose value is the API key.",
    )


class ModelSpec(ApiModel):
    """The chat model an Agent talks to, over the OpenAI-compatible API."""

    name: str = Field(
        default="gpt-4o-mini",
        min_length=1,
        max_length=253,
        description="Model name sent to the endpoint, e.g. gpt-4o-mini or llama3.1:8b.",
    )
    base_url: str | None = Field(
        default=None,
        alias="baseURL",
        pattern=r"^https?://\S+$",
        description=(
            "Base URL of any OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, LiteLLM), "
            "e.g. https://api.openai.com/v1. Left out, the offline scripted model runs: "
            "placeholder text for demos and tests, labelled as scripted everywhere."
        ),
    )
    api_key_secret_ref: SecretKeyRef | None = Field(
        default=None,
        description="Secret holding the API key; it reaches the agent only as an env variable.",
    )
    temperature: float | None = Field(
        default=None, ge=0.0, le=2.0, description="Sampling temperature; defaults per role."
    )
    max_tokens: int | None = Field(
        default=None, ge=1, le=200_000, description="Most completion tokens; defaults per role."
    )
    timeout_seconds: int = Field(
        default=60, ge=1, le=3600, description="Limit on one model call, in seconds."
    )
    max_retries: int = Field(
        default=3,
        ge=0,
        le=10,
        description="Retries of one model call on 429, 5xx, connection errors and timeouts.",
    )
    max_concurrency: int | None = Field(
        default=None,
        ge=1,
        le=MAX_AGENT_CONCURRENCY,
        description=(
            "Most task attempts of this Agent running at once across all Workflows of the "
            "namespace; more wait with reason AgentConcurrencyLimit. Left out: no cap."
        ),
    )
    adaptive_concurrency: bool = Field(
        default=False,
        description=(
            "Follow the endpoint: halve the cap when task results report 429s or timeouts, "
            "raise it by one per round of clean results, within [1, maxConcurrency] (AIMD). "
            "Needs maxConcurrency; the current cap is in status.concurrency."
        ),
    )

    @model_validator(mode="after")
    def _adaptive_needs_a_cap(self) -> ModelSpec:
        if self.adaptive_concurrency and self.max_concurrency is None:
            raise PydanticCustomError(
                "adaptive_without_cap",
                "model.adaptiveConcurrency needs model.maxConcurrency (the cap it adapts "
                "within, 1..{most}): set both or neither",
                {"most": MAX_AGENT_CONCURRENCY},
            )
        return self


class ResourceRequirements(ApiModel):
    """Compute resources of the agent's containers, as in a Pod spec."""

    requests: dict[str, Quantity] = Field(
        default_factory=dict, description="Minimum resources, e.g. cpu: 100m, memory: 256Mi."
    )
    limits: dict[str, Quantity] = Field(
        default_factory=dict, description="Maximum resources, e.g. memory: 512Mi."
    )


class AgentSpec(ApiModel):
    """What an Agent is: its role, prompt, model and how it runs."""

    role: Role = Field(
        default=Role.CUSTOM,
        description="researcher, planner, executor, reviewer, supervisor or custom.",
    )
    system_prompt: str | None = Field(
        default=None,
        max_length=32_768,
        description="System prompt; a default written for the role is used when left out.",
    )
    model: ModelSpec = Field(default_factory=ModelSpec, description="The chat model to use.")
    skills: list[str] = Field(
        default_factory=list,
        max_length=32,
        description=(
            "Short capability tags, e.g. market-analysis: added to the system prompt, and "
            "matched by a Workflow task's agentSelector."
        ),
    )
    self_review: bool | None = Field(
        default=None,
        description="Critique and revise the draft before answering; on by default for reviewers.",
    )
    max_review_rounds: int = Field(
        default=2, ge=1, le=5, description="Most critique/revise rounds when selfReview is on."
    )
    replicas: int = Field(
        default=0,
        ge=0,
        le=20,
        description="Long-running agent pods (serve mode); 0 runs the agent only in tasks.",
    )
    resources: ResourceRequirements = Field(
        default_factory=ResourceRequirements, description="Resources of the agent's containers."
    )
    image: str | None = Field(
        default=None,
        max_length=512,
        description="Agent image; the operator's configured default when left out.",
    )
    members: list[DnsSubdomain] = Field(
        default_factory=list,
        max_length=MAX_MEMBERS,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description=(
            "Agents in this namespace the supervisor delegates to; only for role supervisor."
        ),
    )
    max_iterations: int = Field(
        default=10,
        ge=1,
        le=MAX_ITERATIONS,
        description="Most supervisor turns per invocation of a team.",
    )
    invoke_timeout_seconds: int = Field(
        default=300, ge=1, le=3600, description="Deadline of one invocation of a team, in seconds."
    )

    @model_validator(mode="after")
    def _members_make_a_team(self) -> AgentSpec:
        if self.members and self.role is not Role.SUPERVISOR:
            raise PydanticCustomError(
                "members_without_supervisor",
                "members are only for role supervisor, not {role}: "
                "set role: supervisor or remove members",
                {"role": self.role.value},
            )
        repeated = sorted({m for m in self.members if self.members.count(m) > 1})
        if repeated:
            raise PydanticCustomError(
                "members_repeated",
                "members must be unique; listed more than once: {names}",
                {"names": ", ".join(repeated)},
            )
        return self

    @property
    def defaults(self) -> RoleDefaults:
        return ROLE_DEFAULTS[self.role]

    @property
    def effective_system_prompt(self) -> str:
        prompt = self.system_prompt or self.defaults.system_prompt
        if self.skills:
            prompt += "\nYour skills: " + ", ".join(self.skills) + "."
        return prompt

    @property
    def effective_temperature(self) -> float:
        return (
            self.defaults.temperature if self.model.temperature is None else self.model.temperature
        )

    @property
    def effective_max_tokens(self) -> int:
        return self.defaults.max_tokens if self.model.max_tokens is None else self.model.max_tokens

    @property
    def effective_self_review(self) -> bool:
        return self.defaults.self_review if self.self_review is None else self.self_review


class AgentPhase(StrEnum):
    PROGRESSING = "Progressing"
    READY = "Ready"
    DEGRADED = "Degraded"
    ERROR = "Error"


class AgentCallStats(ApiModel):
    """The supervisor pod's own model calls: counts since it started, and its recent calls."""

    requests: int = Field(
        default=0, ge=0, description="Model calls since the pod started, failed ones included."
    )
    errors: int = Field(default=0, ge=0, description="Model calls that failed.")
    latency_p50_seconds: float | None = Field(
        default=None, ge=0, description="Median latency of its recent successful calls, in s."
    )
    tokens_per_call: float | None = Field(
        default=None, ge=0, description="Mean tokens (input plus output) of its recent calls."
    )
    reported_by: str = Field(description="The pod that made and counted the calls.")
    updated_at: datetime = Field(description="When it last wrote them.")


class AgentConcurrency(ApiModel):
    """The cap on the Agent's running task attempts as the operator applies it now."""

    limit: int = Field(ge=1, description="model.maxConcurrency.")
    effective: int = Field(
        ge=1,
        description="The cap applied now: the limit, or less after throttling when adaptive.",
    )
    running: int = Field(default=0, ge=0, description="Its task attempts running when written.")
    reason: str | None = Field(
        default=None, description="Why the effective cap last changed, in a few words."
    )
    last_adjusted: datetime | None = Field(
        default=None, description="When the effective cap last changed."
    )


class AgentStatus(ApiModel):
    """What the operator and the Agent's supervisor pod observed of an Agent."""

    phase: AgentPhase | None = Field(
        default=None, description="Progressing, Ready, Degraded or Error (by the operator)."
    )
    replicas: int = Field(default=0, ge=0, description="Agent pods wanted (by the operator).")
    ready_replicas: int = Field(
        default=0, ge=0, description="Agent pods ready to serve (by the operator)."
    )
    ready: str | None = Field(
        default=None, description="readyReplicas/replicas, for display (by the operator)."
    )
    supervisor: str | None = Field(
        default=None,
        description="The pod currently holding the Agent's supervisor Lease (by that pod).",
    )
    lease_transitions: int = Field(
        default=0,
        ge=0,
        description="How many times the supervisor Lease changed hands (by the supervisor).",
    )
    calls: AgentCallStats | None = Field(
        default=None, description="The supervisor pod's model calls (by that pod)."
    )
    concurrency: AgentConcurrency | None = Field(
        default=None,
        description="The cap on its running task attempts (by the operator; model.maxConcurrency).",
    )
    observed_generation: int | None = Field(
        default=None, ge=0, description="The metadata.generation last acted on (by the operator)."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description=(
            "Ready, Progressing and MembersReady by the operator; ModelReady by the supervisor."
        ),
    )
