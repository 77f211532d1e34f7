"""The agent graph and its model client, driven by a fake chat model (no network).

Covers the graph's shape per role (draft only, or critique → revise rounds),
the messages each call sends, usage summed over calls, the retry loop on
classified failures, and timeouts cut to the task deadline (its telemetry:
``test_agent_telemetry``).
"""

from __future__ import annotations

from typing import Any

import httpx2
import openai
import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field

from troupe_agent.errors import ModelCallError
from troupe_agent.graph import build_agent_graph, initial_state
from troupe_agent.llm import ModelClient
from troupe_agent.retry import Deadline, RetryPolicy
from troupe_agent.usage import CallStats
from troupe_operator.api import AgentSpec, TokenUsage

URL = "http://127.0.0.1:9/v1/chat/completions"


class FakeChatModel(BaseChatModel):
    """Replies (or raises) from a script, recording every request and its kwargs."""

    script: list[Any]
    requests: list[tuple[list[BaseMessage], dict[str, Any]]] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "fake"

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        self.requests.append((messages, kw))
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        return ChatResult(generations=[ChatGeneration(message=step)])


def reply(text: str, input_tokens: int = 10, output_tokens: int = 5) -> AIMessage:
    return AIMessage(
        content=text,
        usage_metadata={
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens,
        },
    )


def http_error(status: int, headers: dict[str, str] | None = None) -> Exception:
    request = httpx2.Request("POST", URL)
    response = httpx2.Response(status, headers=headers or {}, request=request)
    return openai.APIStatusError(
        f"Error code: {status}", response=response, body={"error": {"message": f"status {status}"}}
    )


def spec(**fields: Any) -> AgentSpec:
    wire = {"model": {"name": "test-model", "baseURL": "http://127.0.0.1:9/v1"}, **fields}
    return AgentSpec.model_validate(wire)


def client_for(
    agent: AgentSpec, model: FakeChatModel, sleeps: list[float] | None = None, **kw: Any
) -> ModelClient:
    recorded = sleeps if sleeps is not None else []
    return ModelClient(
        "agent-1",
        agent,
        "sk-unit-test-key-000",
        chat_model=model,
        sleep=recorded.append,
        retry_policy=RetryPolicy(max_retries=agent.model.max_retries, jitter=lambda: 1.0),
        **kw,
    )


def run_graph(agent: AgentSpec, model: FakeChatModel, **context: str) -> dict[str, Any]:
    graph = build_agent_graph(agent, client_for(agent, model))
    return dict(graph.invoke(initial_state("Write the report", context, Deadline(30))))


def test_executor_drafts_once_with_its_system_prompt_and_the_upstream_context() -> None:
    model = FakeChatModel(script=[reply("the report")])
    agent = spec(role="executor", skills=["writing"])
    state = run_graph(agent, model, research="fact A", plan="step 1")
    assert state["answer"] == "the report"
    [(messages, kwargs)] = model.requests
    assert isinstance(messages[0], SystemMessage)
    assert messages[0].content == agent.effective_system_prompt
    assert "Your skills: writing." in messages[0].text
    task = messages[1].text
    assert "### research\nfact A" in task and "### plan\nstep 1" in task
    assert task.endswith("Write the report")
    assert kwargs["timeout"] == pytest.approx(30, abs=1)  # the 60 s call limit cut to the deadline


def test_reviewer_critiques_and_revises_until_approved_and_sums_usage() -> None:
    model = FakeChatModel(
        script=[
            reply("draft", 100, 50),
            reply("1. The total is wrong.", 120, 10),
            reply("fixed draft", 150, 60),
            reply("APPROVED", 130, 2),
        ]
    )
    state = run_graph(spec(role="reviewer"), model)
    assert state["answer"] == "fixed draft"
    assert state["rounds"] == 1
    assert len(model.requests) == 4
    stats: CallStats = state["stats"]
    assert stats.calls == 4
    assert stats.usage == TokenUsage(input_tokens=500, output_tokens=122, total_tokens=622)
    revise_messages = model.requests[2][0]
    assert isinstance(revise_messages[-2], AIMessage) and revise_messages[-2].content == "draft"
    assert "The total is wrong." in revise_messages[-1].text


def test_review_rounds_are_bounded_by_max_review_rounds() -> None:
    never_happy = [reply("draft")] + [reply("still wrong"), reply("another try")] * 2
    model = FakeChatModel(script=never_happy)
    state = run_graph(spec(role="planner", selfReview=True, maxReviewRounds=2), model)
    assert state["rounds"] == 2
    assert state["answer"] == "another try"
    assert len(model.requests) == 5  # draft, then 2 rounds of critique and revise


def test_approval_on_the_first_critique_keeps_the_draft() -> None:
    model = FakeChatModel(script=[reply("draft"), reply("**Approved** — looks right")])
    state = run_graph(spec(role="reviewer"), model)
    assert state["answer"] == "draft"
    assert len(model.requests) == 2


def test_self_review_can_be_switched_off_for_a_reviewer() -> None:
    model = FakeChatModel(script=[reply("review")])
    run_graph(spec(role="reviewer", selfReview=False), model)
    assert len(model.requests) == 1


def test_rate_limit_with_retry_after_then_success() -> None:
    model = FakeChatModel(script=[http_error(429, {"Retry-After": "2"}), reply("ok")])
    sleeps: list[float] = []
    client = client_for(spec(), model, sleeps)
    answer = client.chat([HumanMessage("hi")], Deadline(None))
    assert answer.text == "ok"
    assert sleeps == [2.0]


def test_server_errors_back_off_exponentially_then_fail_after_max_retries() -> None:
    model = FakeChatModel(script=[http_error(500) for _ in range(4)])
    sleeps: list[float] = []
    client = client_for(spec(model={"baseURL": "http://x/v1", "maxRetries": 3}), model, sleeps)
    with pytest.raises(ModelCallError) as failed:
        client.chat([HumanMessage("hi")], Deadline(None))
    assert sleeps == [0.5, 1.0, 2.0]
    assert len(model.requests) == 4
    assert failed.value.retryable
    assert "HTTP 500" in str(failed.value) and "after 4 attempts" in str(failed.value)


def test_unauthorized_fails_at_once() -> None:
    model = FakeChatModel(script=[http_error(401), reply("never reached")])
    sleeps: list[float] = []
    with pytest.raises(ModelCallError) as failed:
        client_for(spec(), model, sleeps).chat([HumanMessage("hi")], Deadline(None))
    assert len(model.requests) == 1
    assert sleeps == []
    assert not failed.value.retryable


def test_a_retry_that_would_cross_the_deadline_is_not_attempted() -> None:
    model = FakeChatModel(script=[http_error(429, {"Retry-After": "60"}), reply("late")])
    with pytest.raises(ModelCallError) as failed:
        client_for(spec(), model).chat([HumanMessage("hi")], Deadline(5))
    assert "deadline" in str(failed.value)
    assert len(model.requests) == 1


def test_an_expired_deadline_stops_before_calling() -> None:
    model = FakeChatModel(script=[reply("never")])
    with pytest.raises(ModelCallError, match="deadline"):
        client_for(spec(), model).chat([HumanMessage("hi")], Deadline(0, clock=lambda: 1.0))
    assert model.requests == []
