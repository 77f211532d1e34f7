"""The agent as a LangGraph ``StateGraph``: draft, then (when it checks its own work)
critique → revise rounds until the critique approves or the rounds run out.

::

    START → draft ─┬─────────────────────────────→ END      (no self-review)
                   └→ critique ─┬─ approved ─────→ END
                         ↑      └→ revise ─┬─────→ END      (maxReviewRounds reached)
                         └─────────────────┘

Every node talks to the model through :class:`~troupe_agent.llm.ModelClient`;
the tokens and latency of each call add up in the state's ``stats``.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from typing import Annotated, TypedDict

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from troupe_agent.llm import ModelClient
from troupe_agent.prompts import critique_message, is_approval, revise_message, task_message
from troupe_agent.retry import Deadline
from troupe_agent.usage import CallStats
from troupe_operator.api import AgentSpec


class AgentState(TypedDict):
    prompt: str
    context: Mapping[str, str]
    deadline: Deadline
    answer: str
    critique: str
    rounds: int
    stats: Annotated[CallStats, operator.add]


AgentGraph = CompiledStateGraph[AgentState, None, AgentState, AgentState]


def build_agent_graph(spec: AgentSpec, client: ModelClient) -> AgentGraph:
    """The compiled graph for one Agent; ``invoke`` it with :func:`initial_state`."""
    system = SystemMessage(spec.effective_system_prompt)

    def task_conversation(state: AgentState) -> list[BaseMessage]:
        return [system, HumanMessage(task_message(state["prompt"], state["context"]))]

    def draft(state: AgentState) -> dict[str, object]:
        reply = client.chat(task_conversation(state), state["deadline"])
        return {"answer": reply.text, "stats": reply.stats}

    def critique(state: AgentState) -> dict[str, object]:
        task = task_message(state["prompt"], state["context"])
        messages = [system, HumanMessage(critique_message(task, state["answer"]))]
        reply = client.chat(messages, state["deadline"])
        return {"critique": reply.text, "stats": reply.stats}

    def revise(state: AgentState) -> dict[str, object]:
        messages = [
            *task_conversation(state),
            AIMessage(state["answer"]),
            HumanMessage(revise_message(state["critique"])),
        ]
        reply = client.chat(messages, state["deadline"])
        return {"answer": reply.text, "rounds": state["rounds"] + 1, "stats": reply.stats}

    def after_critique(state: AgentState) -> str:
        return END if is_approval(state["critique"]) else "revise"

    def after_revise(state: AgentState) -> str:
        return END if state["rounds"] >= spec.max_review_rounds else "critique"

    graph = StateGraph(AgentState)
    graph.add_node("draft", draft)
    graph.add_edge(START, "draft")
    if spec.effective_self_review:
        graph.add_node("critique", critique)
        graph.add_node("revise", revise)
        graph.add_edge("draft", "critique")
        graph.add_conditional_edges("critique", after_critique, ["revise", END])
        graph.add_conditional_edges("revise", after_revise, ["critique", END])
    else:
        graph.add_edge("draft", END)
    return graph.compile(name="troupe-agent")


def initial_state(prompt: str, context: Mapping[str, str], deadline: Deadline) -> AgentState:
    return AgentState(
        prompt=prompt,
        context=context,
        deadline=deadline,
        answer="",
        critique="",
        rounds=0,
        stats=CallStats(),
    )
