"""The Conversation kind: a team's checkpoint of one conversation, written by its own pods.

A supervisor Agent's pods run a conversation turn by turn: at each turn the
supervisor names a member and an instruction, and the member answers. The
pods keep the conversation so far in a Conversation, not in their memory, so
that it outlives the pod that started it (a supervisor that goes, a new one
elected) and so that ``kubectl get conversations`` shows what a team is
doing. The operator neither reads nor writes Conversations.

Every text is bounded, and so is the number of turns (one per iteration, and
``maxIterations`` is bounded): a checkpoint keeps what the next turn needs, not every byte a
member said, and stays far below etcd's limit on an object.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from troupe_operator.api.agent import MAX_ITERATIONS
from troupe_operator.api.common import ApiModel, DnsSubdomain, TokenUsage


class ConversationTurn(ApiModel):
    """One delegation: the member, what it was asked, and its answer as far as it fits."""

    member: DnsSubdomain = Field(description="The member Agent that acted.")
    instruction: str = Field(max_length=2048, description="What the supervisor asked of it.")
    output: str = Field(max_length=4096, description="Its answer, cut to fit.")
    usage: TokenUsage = Field(default_factory=TokenUsage, description="Tokens the turn took.")


class ConversationSpec(ApiModel):
    """One conversation of a team, as far as it got."""

    agent: DnsSubdomain = Field(description="The supervisor Agent whose conversation this is.")
    conversation_id: str = Field(
        min_length=1, max_length=253, description="The conversation's id, as its caller gave it."
    )
    prompt: str = Field(max_length=32_768, description="What the team was asked.")
    turns: list[ConversationTurn] = Field(
        default_factory=list, max_length=MAX_ITERATIONS, description="The turns so far, in order."
    )
    answer: str | None = Field(
        default=None,
        max_length=65_536,
        description="The team's answer; left out while the conversation runs.",
    )
    usage: TokenUsage = Field(
        default_factory=TokenUsage, description="Tokens of the whole conversation so far."
    )
    expires_at: datetime = Field(description="When the checkpoint may be deleted (RFC 3339).")
