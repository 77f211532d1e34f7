"""The supervisor loop of a Workflow task: its spec, what its pods report, what status keeps.

A ``supervise`` task runs a supervisor Agent turn by turn: each turn is a unit of the task
(``NAME.turn-N``) whose pod asks the supervisor's model for a decision, delegate steps to
member Agents or finish with the answer; each delegation is a unit too
(``NAME.turn-N.M``), run on its member. The operator moves references only: a turn's pod
writes the decision itself (the instructions) to its output ConfigMap, and reports to the
operator just its shape (:class:`TurnDecision`: the members, or that it finished), which
status keeps. These models refuse anything unbounded: every list has a stated limit.
"""

from __future__ import annotations

from typing import Final

from pydantic import Field

from troupe_operator.api.agent import MAX_MEMBERS
from troupe_operator.api.common import ApiModel, DnsLabel

MAX_SUPERVISE_ITERATIONS: Final = 20
"""Most turns of one supervise task: each is a Job, a ConfigMap and a status entry, and every
turn's model call reads all earlier turns."""
MAX_SUPERVISE_CONCURRENT: Final = 5
"""Most delegations one turn may make (they run at once)."""


class Supervise(ApiModel):
    """Run the task as a supervisor loop: the task's prompt is the request to the supervisor."""

    agent: DnsLabel = Field(description="The supervisor Agent, which decides each turn.")
    members: list[DnsLabel] = Field(
        min_length=1,
        max_length=MAX_MEMBERS,
        description="The member Agents it may delegate to (unique; as many as a team's).",
    )
    max_iterations: int = Field(
        default=10,
        ge=1,
        le=MAX_SUPERVISE_ITERATIONS,
        description=(
            "Most supervisor turns; a supervisor still delegating at the last one fails the "
            "task (reason MaxIterations)."
        ),
    )
    max_concurrent: int = Field(
        default=3,
        ge=1,
        le=MAX_SUPERVISE_CONCURRENT,
        description="Most delegations in one turn, which run at once.",
    )


class TurnDecision(ApiModel):
    """What a turn decided, as its report tells the operator: who to delegate to, or finish.

    The instructions and the answer stay in the turn's output ConfigMap.
    """

    members: list[DnsLabel] = Field(
        default_factory=list,
        max_length=MAX_SUPERVISE_CONCURRENT,
        description="The members delegated to, in the decision's order (none when finished).",
    )
    finished: bool = Field(
        default=False, description="Whether the supervisor finished: its output is the answer."
    )


class SupervisedDelegation(ApiModel):
    """One step a turn delegated."""

    member: DnsLabel = Field(description="The member Agent asked.")
    unit: str | None = Field(
        default=None,
        description=(
            "The unit that runs it (NAME.turn-N.M, its entry in tasks); absent when it was not "
            "run because the loop stopped at maxIterations."
        ),
    )


class SupervisorTurn(ApiModel):
    """One supervisor turn: its unit, and its decision once made."""

    unit: str = Field(description="The turn's unit (NAME.turn-N, its entry in tasks).")
    delegations: list[SupervisedDelegation] = Field(
        default_factory=list,
        max_length=MAX_SUPERVISE_CONCURRENT,
        description="What it delegated, in order.",
    )
    finished: bool = Field(
        default=False, description="Whether it finished the loop: its output is the task's."
    )

    @property
    def decided(self) -> bool:
        return self.finished or bool(self.delegations)


class SuperviseStatus(ApiModel):
    """A supervise task's loop as it went: every decision, recorded once."""

    iterations: int = Field(ge=0, description="Turns started so far.")
    turns: list[SupervisorTurn] = Field(
        default_factory=list,
        max_length=MAX_SUPERVISE_ITERATIONS,
        description="The turns in order, each with its decision once made.",
    )


class TurnRefs(ApiModel):
    """Where one earlier turn's decision and its delegations' outputs are."""

    turn: str = Field(description="The turn's unit key.")
    decision: str = Field(description="Its output ConfigMap, holding the decision as JSON.")
    outputs: list[str] = Field(
        default_factory=list,
        max_length=MAX_SUPERVISE_CONCURRENT,
        description="Output ConfigMaps of its delegations, in the decision's order.",
    )


class InstructionRef(ApiModel):
    """Which instruction of which turn's decision a delegation carries out."""

    turn: str = Field(description="The unit key of the turn that delegated.")
    decision: str = Field(description="That turn's output ConfigMap (its decision as JSON).")
    index: int = Field(ge=0, lt=MAX_SUPERVISE_CONCURRENT, description="Position in the decision.")


class SuperviseInput(ApiModel):
    """What a unit of a supervise task reads besides the task's own inputs: a turn reads the
    earlier turns (``history``), a delegation its instruction."""

    history: list[TurnRefs] = Field(
        default_factory=list,
        max_length=MAX_SUPERVISE_ITERATIONS,
        description="For a turn: every earlier turn, in order.",
    )
    instruction: InstructionRef | None = Field(
        default=None, description="For a delegation: the instruction it carries out."
    )
