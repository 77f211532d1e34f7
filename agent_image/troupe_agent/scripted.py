"""The offline scripted model: deterministic placeholder replies when no endpoint is set.

It lets the demo and the tests run a whole workflow without an LLM. Every reply
starts with :data:`PLACEHOLDER_BANNER` (offered tools, it calls the one named
:data:`FINISH_TOOL` with such a reply, so a scripted team supervisor answers at
once instead of pretending to delegate; offered the structured-output tool, it
calls it with the schema's :func:`~troupe_agent.structured.minimal_instance`, so an
offline run still yields schema-valid JSON), the model calls itself
``SCRIPTED_MODEL_NAME``, and it reports no token usage: no provider counted
any tokens, and inventing counts would spend tenants' token budgets on text
nobody generated. It is only ever chosen when ``model.baseURL`` is unset.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable

from troupe_agent.prompts import APPROVAL_WORD, CRITIQUE_INSTRUCTION, REVISE_INSTRUCTION
from troupe_agent.structured import OUTPUT_TOOL, minimal_instance
from troupe_operator.api import SCRIPTED_MODEL_NAME, Role

PLACEHOLDER_BANNER: Final = "[scripted placeholder — no LLM was called]"
FINISH_TOOL: Final = "finish"

_EXCERPT_LENGTH: Final = 160

_ROLE_BODIES: Final[dict[Role, str]] = {
    Role.RESEARCHER: (
        "Findings (placeholder):\n"
        "1. A first fact that bears on the task — source: none, this text is scripted.\n"
        "2. A second fact — source: none.\n"
        "Open questions: everything, because no model was consulted."
    ),
    Role.PLANNER: (
        "Plan (placeholder):\n"
        "1. Gather the inputs — owner: researcher; done when the facts are listed.\n"
        "2. Do the work — owner: executor; done when the artefact exists.\n"
        "3. Check the work — owner: reviewer; done when it is accepted.\n"
        "Risk: this plan was not written by a model."
    ),
    Role.EXECUTOR: (
        "Result (placeholder): the artefact the task asks for would appear here.\n"
        "Not completed: every step, because no model was called."
    ),
    Role.REVIEWER: (
        "Review (placeholder): no errors checked, because no model was called.\n"
        "Rating: revise — a real model must review this work."
    ),
    Role.SUPERVISOR: (
        "Decision (placeholder): the next member to act would be chosen here.\n"
        "Conflicts for a person to settle: none detected, because none were looked for."
    ),
    Role.CUSTOM: "Answer (placeholder): a model's answer would appear here.",
}


class ScriptedChatModel(BaseChatModel):
    """A chat model that answers from a script, by role, without any network call."""

    role: Role = Role.CUSTOM

    @property
    def _llm_type(self) -> str:
        return "troupe-scripted"

    def bind_tools(
        self, tools: Sequence[Any], *, tool_choice: str | None = None, **kwargs: Any
    ) -> Runnable[LanguageModelInput, AIMessage]:
        return self.bind(tools=tools)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        text = self.reply_to(messages)
        calls = []
        functions = {
            tool["function"]["name"]: tool["function"] for tool in kwargs.get("tools") or ()
        }
        if OUTPUT_TOOL in functions:
            value = minimal_instance(functions[OUTPUT_TOOL].get("parameters"))
            calls = [{"name": OUTPUT_TOOL, "args": value, "id": "scripted-output"}]
        elif functions:
            calls = [{"name": FINISH_TOOL, "args": {"answer": text}, "id": "scripted-finish"}]
        reply = AIMessage(
            content="" if calls else text,
            tool_calls=calls,
            response_metadata={"model_name": SCRIPTED_MODEL_NAME, "scripted": True},
        )
        return ChatResult(generations=[ChatGeneration(message=reply)])

    def reply_to(self, messages: list[BaseMessage]) -> str:
        """The scripted reply to a conversation: a draft, a critique or a revision."""
        request = _last_human_text(messages)
        if request.startswith(CRITIQUE_INSTRUCTION):
            return f"{APPROVAL_WORD} {PLACEHOLDER_BANNER} The scripted critic approves every draft."
        if request.startswith(REVISE_INSTRUCTION):
            return f"{PLACEHOLDER_BANNER}\nRevised answer (placeholder) by the {self.role} role."
        return (
            f"{PLACEHOLDER_BANNER}\nRole: {self.role}. Task: {_excerpt(request)}\n"
            f"{_ROLE_BODIES[self.role]}"
        )


def _last_human_text(messages: list[BaseMessage]) -> str:
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            return message.text
    return ""


def _excerpt(request: str) -> str:
    task = request.rsplit("## Task\n", 1)[-1]
    first_line = " ".join(task.split())
    if len(first_line) <= _EXCERPT_LENGTH:
        return first_line
    return first_line[: _EXCERPT_LENGTH - 1] + "…"
