"""The Agent kind: one LLM role with its model, prompt and footprint.

An Agent is used two ways: a Workflow task names it and runs it in a Job, and
with ``replicas > 0`` it also runs as long-lived pods that elect a supervisor.
The per-role defaults live here, next to the fields they fill in.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from pydantic import Field

from troupe_operator.api.common import (
    ApiModel,
    Condition,
    DnsSubdomain,
    Quantity,
)


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
        description="Short capability tags added to the system prompt, e.g. market-analysis.",
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


class AgentStatus(ApiModel):
    """What the operator observed of an Agent."""

    phase: AgentPhase | None = Field(
        default=None, description="Progressing, Ready, Degraded or Error."
    )
    replicas: int = Field(default=0, ge=0, description="Agent pods wanted.")
    ready_replicas: int = Field(default=0, ge=0, description="Agent pods ready to serve.")
    ready: str | None = Field(default=None, description="readyReplicas/replicas, for display.")
    supervisor: str | None = Field(
        default=None, description="The pod currently holding the Agent's supervisor Lease."
    )
    lease_transitions: int = Field(
        default=0, ge=0, description="How many times the supervisor Lease changed hands."
    )
    observed_generation: int | None = Field(
        default=None, ge=0, description="The metadata.generation last acted on."
    )
    conditions: list[Condition] = Field(
        default_factory=list, description="Ready and Progressing, with the reason of each."
    )
