"""Best of N: a task answered by several candidates, one judge scoring them, the best kept.

``tasks[].candidates`` runs the task's prompt N times (on N Agents, or on its own Agent
N times), then one judge scores every candidate's output on every criterion; the core
picks the winner from the scores, the weights and each candidate's tokens, and the
task's output is the winner's. Only the shapes live here: the rule is
``troupe_operator.workflow.candidates``, the judge's step ``troupe_agent.judging``.
"""

from __future__ import annotations

from typing import Annotated, Final

from pydantic import Field

from troupe_operator.api.common import ApiModel, DnsLabel

MAX_CANDIDATES: Final = 10
"""Most candidates of one task: each is a Job, a ConfigMap, a status entry and part of the
judge's prompt."""
MAX_CRITERIA: Final = 10
"""Most criteria a judge scores on; with ``MAX_CANDIDATES`` its report carries at most
100 scores."""
MAX_WEIGHT: Final = 100.0
MAX_COST_PENALTY: Final = 1000.0

CANDIDATE_PREFIX: Final = "candidate-"
JUDGE_SUFFIX: Final = "judge"
"""A candidates task NAME runs units NAME.candidate-1 … NAME.candidate-N and NAME.judge."""

Score = Annotated[float, Field(ge=0, le=1)]
"""A judge's score of one candidate on one criterion: 0 worst, 1 best."""
CriterionScores = Annotated[list[Score], Field(max_length=MAX_CRITERIA)]
"""One candidate's scores, in the order of the judge's criteria."""


class Criterion(ApiModel):
    """One thing the judge scores every candidate on, and how much it counts."""

    name: str = Field(
        min_length=1,
        max_length=63,
        pattern=r"^[A-Za-z_][A-Za-z0-9_-]*$",
        description="What is scored, e.g. accuracy; unique among the judge's criteria.",
    )
    weight: float = Field(
        ge=0,
        le=MAX_WEIGHT,
        description="Its weight in a candidate's score (the sum of weight x score).",
    )


class Judge(ApiModel):
    """The Agent that scores the candidates, and how its scores become the winner."""

    agent: DnsLabel = Field(description="Name of the Agent that judges.")
    criteria: list[Criterion] = Field(
        min_length=1,
        max_length=MAX_CRITERIA,
        description=(
            "What the judge scores each candidate on, from 0 to 1; weights are non-negative "
            "and at least one is positive."
        ),
    )
    cost_penalty: float = Field(
        default=0.0,
        ge=0,
        le=MAX_COST_PENALTY,
        description=(
            "Subtracted from a candidate's weighted score per 1,000 tokens it used, so a "
            "cheaper answer wins unless a dearer one is better by more."
        ),
    )


class Candidates(ApiModel):
    """Run the task's prompt several times and keep the answer the judge scores best."""

    agents: list[DnsLabel] | None = Field(
        default=None,
        min_length=2,
        max_length=MAX_CANDIDATES,
        description=(
            "One candidate on each of these Agents (different ones); or set count. The "
            "task's agent must be one of them."
        ),
    )
    count: int | None = Field(
        default=None,
        ge=2,
        le=MAX_CANDIDATES,
        description="This many candidates on the task's own agent; or set agents.",
    )
    judge: Judge = Field(description="Who scores the candidates, on what.")

    def labels(self) -> list[str]:
        """candidate-1 … candidate-N: how the candidates are called in keys, to the judge
        and in status (only one of agents and count is set: a static check)."""
        count = len(self.agents) if self.agents else self.count or 0
        return [f"{CANDIDATE_PREFIX}{index}" for index in range(1, count + 1)]


class CandidateStatus(ApiModel):
    """One candidate as its task's status lists it; scores once the judge has scored it."""

    unit: str = Field(description="Its entry in tasks (NAME.candidate-I).")
    agent: str | None = Field(
        default=None,
        description=(
            "The Agent it runs on; absent when the task's agentSelector chooses it (the "
            "candidate's own entry in tasks records each attempt's Agent)."
        ),
    )
    tokens: int | None = Field(
        default=None, ge=0, description="Tokens it used, all attempts (what costPenalty counts)."
    )
    scores: CriterionScores | None = Field(
        default=None, description="The judge's scores, in the order of the criteria."
    )
    score: float | None = Field(
        default=None,
        description="Weighted score minus costPenalty x tokens / 1000, to 6 decimals.",
    )
