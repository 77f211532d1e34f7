"""A supervisor's decision: the tools its model chooses between, what it is told, what it chose.

Shared by the two supervisor loops, so they cannot drift: the team endpoint
(``troupe_agent.team``, one delegation per turn, over HTTP) and a Workflow's ``supervise``
task (``troupe_agent.supervise``, up to ``maxConcurrent`` delegations per turn, as Jobs).
Each turn the model is offered :data:`DELEGATE_TOOL` (a member, from the enum of members,
and an instruction) and :data:`FINISH_TOOL` (the answer) and must call one: several
``delegate`` calls in one reply (parallel tool calls) are several delegations. A reply
without a tool call is taken as the answer. This module refuses to check a decision against
a loop's limits (members, how many at once): each loop does, and says which limit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from troupe_agent.scripted import FINISH_TOOL
from troupe_operator.api import AgentSpec

DELEGATE_TOOL: Final = "delegate"


@dataclass(frozen=True)
class Delegation:
    member: str
    instruction: str


@dataclass(frozen=True)
class Finish:
    answer: str


Decision = tuple[Delegation, ...] | Finish
"""One or more delegations (in the order the model made them), or the answer."""


class Exchange(Protocol):
    """One completed delegation as the supervisor reads it on later turns."""

    @property
    def member(self) -> str: ...

    @property
    def instruction(self) -> str: ...

    @property
    def output(self) -> str: ...


def decision_tools(members: Sequence[str]) -> list[dict[str, Any]]:
    """The two tools the supervisor model chooses between, as OpenAI function schemas."""

    def tool(name: str, description: str, properties: dict[str, Any]) -> dict[str, Any]:
        parameters = {
            "type": "object",
            "properties": properties,
            "required": list(properties),
            "additionalProperties": False,
        }
        return {
            "type": "function",
            "function": {"name": name, "description": description, "parameters": parameters},
        }

    return [
        tool(
            DELEGATE_TOOL,
            "Ask one member of the team to do the next step.",
            {
                "member": {"type": "string", "enum": list(members)},
                "instruction": {"type": "string", "description": "What the member must do."},
            },
        ),
        tool(
            FINISH_TOOL,
            "End the conversation with the final answer to the request.",
            {"answer": {"type": "string", "description": "The final answer."}},
        ),
    ]


def decision_messages(
    spec: AgentSpec,
    members: Sequence[str],
    request: str,
    exchanges: Sequence[Exchange],
    at_once: int = 1,
) -> list[BaseMessage]:
    """What the supervisor model reads each turn: its role, the request, every exchange so
    far; ``at_once`` is how many delegations one turn may make."""
    steps = "\n".join(
        f"{number}. {step.member} was asked: {step.instruction}\n   and answered: {step.output}"
        for number, step in enumerate(exchanges, start=1)
    )
    delegate = (
        f"call `{DELEGATE_TOOL}` to give one member one step"
        if at_once == 1
        else (
            f"call `{DELEGATE_TOOL}` once for each step to give a member (at most {at_once} in "
            "one turn; they run at the same time, and each member sees only its instruction)"
        )
    )
    return [
        SystemMessage(
            f"{spec.effective_system_prompt}\n\nYou lead a team whose members are:"
            f" {', '.join(members)}. Each turn, {delegate}, or `{FINISH_TOOL}` with the final"
            " answer once the request is answered."
        ),
        HumanMessage(f"## Request\n{request}\n\n## Turns so far\n{steps or '(none yet)'}"),
    ]


def read_decision(tool_calls: Sequence[Mapping[str, Any]], text: str) -> Decision:
    """The model's choice; ValueError when it chose something that is not on offer, or
    finished and delegated in one reply."""
    if not tool_calls:
        return Finish(text)
    delegations, answers = [], []
    for call in tool_calls:
        args = call.get("args") or {}
        if call.get("name") == FINISH_TOOL:
            answers.append(str(args.get("answer", "")))
        elif call.get("name") == DELEGATE_TOOL:
            member, instruction = str(args.get("member", "")), str(args.get("instruction", ""))
            delegations.append(Delegation(member, instruction))
        else:
            raise ValueError(f"the supervisor model called an unknown tool {call.get('name')!r}")
    if answers and (delegations or len(answers) > 1):
        raise ValueError(
            f"the supervisor model called {FINISH_TOOL} together with other tools in one reply"
        )
    return Finish(answers[0]) if answers else tuple(delegations)
