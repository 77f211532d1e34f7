"""The team endpoint: a supervisor Agent's loop over its member Agents, as a LangGraph graph.

::

    START → decide ─┬─ delegate(member, instruction) → ask the member → checkpoint ─┐
              ↑     └─ finish(answer) → checkpoint → END                            │
              └─────────────────────────────────────────────────────────────────────┘

Each turn the supervisor's model is offered two tools and must call one:
``delegate`` (a member, from the Agent's ``members``, and an instruction) or
``finish`` (the answer): a structured decision, not parsed prose, whose schema
a Workflow's ``supervise`` task shares (``troupe_agent.decisions``). A reply
without a tool call is taken as the answer; a team delegates one step per turn.
A delegation is sent to the member's Service (``/v1/invoke``) with the caller's
own bearer token, so the caller needs permission to invoke the members too: the
team never lends its authority. A member's 429, 5xx and connection failures are retried with
backoff within the invocation's deadline; its 401/403 are the caller's
(passed back as they are), anything else is a 502 naming the member.

After every completed turn the conversation is checkpointed
(``troupe_agent.conversations``): a supervisor pod that dies mid-conversation
loses at most the turn in flight, and the caller sending the same
``conversationId`` to the new supervisor resumes after the last completed
turn (a finished conversation answers again from its checkpoint, paying
nothing). The loop ends with an answer, or fails with ``MaxIterations`` when
``maxIterations`` decisions did not finish, or ``DeadlineExceeded`` after
``invokeTimeoutSeconds``; the error carries the turns done and their cost.
An invocation is one ``invoke_agent`` span in the caller's trace, and each
delegation carries its context (``traceparent``) to the member, whose run joins it.

This module refuses to authenticate callers (serve mode did) and to decide who
leads (``troupe_agent.supervision``); it runs on the pod that does.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final, TypedDict

import httpx
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from opentelemetry.context import Context

from troupe_agent.conversations import (
    MAX_ANSWER,
    MAX_INSTRUCTION,
    MAX_OUTPUT,
    MAX_TURNS,
    Checkpoint,
    ConversationStore,
    Turn,
    shortened,
)
from troupe_agent.decisions import (
    Delegation,
    Finish,
    decision_messages,
    decision_tools,
    read_decision,
)
from troupe_agent.llm import ModelClient
from troupe_agent.retry import Deadline, RetryPolicy, parse_retry_after
from troupe_agent.telemetry import inject_context
from troupe_operator.api import AgentSpec, TokenUsage

log = logging.getLogger(__name__)

MEMBER_POLICY: Final = RetryPolicy(max_retries=3, base_delay=0.5, max_delay=5.0)
MEMBER_CALL_SECONDS: Final = 300.0
"""Longest single member call; the invocation's deadline cuts it shorter."""


class TeamError(Exception):
    """An invocation the team could not answer: an HTTP status, a reason, and what was done."""

    def __init__(self, status: int, reason: str, message: str, done: Checkpoint) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.done = done


class MemberFailed(Exception):
    """A member that did not answer: the HTTP status for the caller, and why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class MemberClient:
    """Invokes member Agents over their Services, with the caller's token."""

    def __init__(
        self,
        addresses: Mapping[str, str],
        http: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.addresses = dict(addresses)
        self._http = http or httpx.Client()
        self._sleep = sleep

    def ask(
        self, member: str, instruction: str, request: str, authorization: str, deadline: Deadline
    ) -> tuple[str, TokenUsage]:
        """The member's output and usage; raises :class:`MemberFailed`."""
        url = f"{self.addresses[member].rstrip('/')}/v1/invoke"
        body = {"prompt": instruction, "context": {"team request": request}}
        headers = {"Authorization": authorization}
        inject_context(headers)
        retries = 0
        while True:
            timeout = deadline.call_timeout(MEMBER_CALL_SECONDS)
            retry_after: float | None = None
            try:
                response = self._http.post(url, json=body, headers=headers, timeout=timeout)
            except httpx.TransportError as error:
                detail = f"cannot reach member {member}: {type(error).__name__}"
            else:
                if response.status_code == 200:
                    reply = response.json()
                    usage = TokenUsage.model_validate(reply.get("usage") or {})
                    return str(reply.get("output", "")), usage
                detail = f"member {member} answered {response.status_code}: {_error_of(response)}"
                if response.status_code in (401, 403):
                    raise MemberFailed(response.status_code, detail)
                if response.status_code != 429 and response.status_code < 500:
                    raise MemberFailed(502, detail)
                retry_after = parse_retry_after(dict(response.headers))
            delay = MEMBER_POLICY.delay(retries, retry_after)
            if retries >= MEMBER_POLICY.max_retries or not deadline.allows_wait(delay):
                raise MemberFailed(502, f"{detail} (gave up after {retries + 1} attempts)")
            log.warning("%s, retry %d in %.2fs", detail, retries + 1, delay)
            self._sleep(delay)
            retries += 1


def _error_of(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error", ""))[:500]
    except (ValueError, AttributeError):
        return response.text[:200]


class TeamState(TypedDict):
    checkpoint: Checkpoint
    decision: Delegation | Finish | None
    decision_cost: TokenUsage


@dataclass(frozen=True)
class Invocation:
    """What one call brings that the graph must not keep: the caller's token, the deadline."""

    authorization: str
    deadline: Deadline


@dataclass(frozen=True)
class TeamReply:
    checkpoint: Checkpoint
    resumed_turns: int
    replayed: bool

    def to_wire(self, model: str, scripted: bool) -> dict[str, Any]:
        turns = self.checkpoint.turns
        return {
            "output": self.checkpoint.answer,
            "conversationId": self.checkpoint.conversation_id,
            "turns": [turn.to_wire() for turn in turns],
            "iterations": len(turns) + 1,
            "resumedTurns": self.resumed_turns,
            "replayed": self.replayed,
            "model": model,
            "scripted": scripted,
            "usage": self.checkpoint.usage.to_wire(),
        }


class Team:
    """A supervisor Agent's team loop (see the module docstring)."""

    def __init__(
        self,
        spec: AgentSpec,
        client: ModelClient,
        members: MemberClient,
        store: ConversationStore | None,
    ) -> None:
        self.spec = spec
        self.client = client
        self.members = members
        self.store = store
        self._names = sorted(members.addresses)
        self._tools = decision_tools(self._names)
        self._graph = self._build()

    def invoke(
        self,
        prompt: str,
        conversation_id: str,
        authorization: str,
        trace_parent: Context | None = None,
    ) -> TeamReply:
        """Answer ``prompt`` in conversation ``conversation_id``, resuming it if it was begun.

        ``trace_parent`` is the caller's trace context, which the invocation joins."""
        checkpoint = self.store.load(conversation_id) if self.store else None
        if checkpoint is not None and checkpoint.prompt != prompt:
            raise TeamError(
                409,
                "ConversationMismatch",
                f"conversation {conversation_id!r} answers another request; use a new"
                " conversationId for a new request",
                checkpoint,
            )
        if checkpoint is not None and checkpoint.answer is not None:
            return TeamReply(checkpoint, len(checkpoint.turns), replayed=True)
        start = checkpoint or Checkpoint(conversation_id, prompt)
        invocation = Invocation(authorization, Deadline(self.spec.invoke_timeout_seconds))
        telemetry, client = self.client.telemetry, self.client
        with telemetry.agent_span(client.agent_name, client.target, trace_parent):
            state = self._graph.invoke(
                TeamState(checkpoint=start, decision=None, decision_cost=TokenUsage()),
                config={
                    "configurable": {"invocation": invocation},
                    "recursion_limit": 2 * self.spec.max_iterations + 4,
                },
            )
        return TeamReply(state["checkpoint"], len(start.turns), replayed=False)

    def _build(self) -> Any:
        def decide(state: TeamState, config: RunnableConfig) -> dict[str, object]:
            checkpoint = state["checkpoint"]
            invocation: Invocation = config["configurable"]["invocation"]
            limit = min(self.spec.max_iterations, MAX_TURNS)
            if len(checkpoint.turns) >= limit:
                raise TeamError(
                    422,
                    "MaxIterations",
                    f"the supervisor did not finish within maxIterations={limit}"
                    f" ({len(checkpoint.turns)} turns: "
                    f"{', '.join(turn.member for turn in checkpoint.turns)})",
                    checkpoint,
                )
            self._check_deadline(invocation, checkpoint)
            reply = self.client.chat(
                decision_messages(self.spec, self._names, checkpoint.prompt, checkpoint.turns),
                invocation.deadline,
                self._tools,
            )
            try:
                decided = read_decision(reply.tool_calls, reply.text)
            except ValueError as error:
                raise TeamError(502, "InvalidDecision", str(error), checkpoint) from None
            # One step per turn: parallel tool calls are off; a server sending more gets its first.
            decision = decided[0] if isinstance(decided, tuple) else decided
            if isinstance(decision, Delegation) and decision.member not in self._names:
                raise TeamError(
                    502,
                    "InvalidDecision",
                    f"the supervisor model chose {decision.member!r}, not a member"
                    f" ({', '.join(self._names)})",
                    checkpoint,
                )
            return {"decision": decision, "decision_cost": reply.stats.usage}

        def delegate(state: TeamState, config: RunnableConfig) -> dict[str, object]:
            checkpoint = state["checkpoint"]
            decision = state["decision"]
            assert isinstance(decision, Delegation)
            invocation: Invocation = config["configurable"]["invocation"]
            self._check_deadline(invocation, checkpoint)
            instruction = shortened(decision.instruction, MAX_INSTRUCTION)
            try:
                output, cost = self.members.ask(
                    decision.member,
                    instruction,
                    checkpoint.prompt,
                    invocation.authorization,
                    invocation.deadline,
                )
            except MemberFailed as failure:
                raise TeamError(failure.status, "MemberFailed", str(failure), checkpoint) from None
            turn_cost = cost + state["decision_cost"]
            turn = Turn(decision.member, instruction, shortened(output, MAX_OUTPUT), turn_cost)
            return {"checkpoint": self._save(checkpoint.with_turn(turn, turn_cost))}

        def finish(state: TeamState) -> dict[str, object]:
            decision = state["decision"]
            assert isinstance(decision, Finish)
            checkpoint = state["checkpoint"]
            done = replace(
                checkpoint,
                usage=checkpoint.usage + state["decision_cost"],
                answer=shortened(decision.answer, MAX_ANSWER),
            )
            return {"checkpoint": self._save(done)}

        def route(state: TeamState) -> str:
            return "delegate" if isinstance(state["decision"], Delegation) else "finish"

        graph = StateGraph(TeamState)
        graph.add_node("decide", decide)
        graph.add_node("delegate", delegate)
        graph.add_node("finish", finish)
        graph.add_edge(START, "decide")
        graph.add_conditional_edges("decide", route, ["delegate", "finish"])
        graph.add_edge("delegate", "decide")
        graph.add_edge("finish", END)
        return graph.compile(name="troupe-team")

    def _save(self, checkpoint: Checkpoint) -> Checkpoint:
        return self.store.save(checkpoint) if self.store else checkpoint

    def _check_deadline(self, invocation: Invocation, checkpoint: Checkpoint) -> None:
        if invocation.deadline.expired():
            raise TeamError(
                504,
                "DeadlineExceeded",
                f"the team did not answer within invokeTimeoutSeconds="
                f"{self.spec.invoke_timeout_seconds} ({len(checkpoint.turns)} turns done)",
                checkpoint,
            )
