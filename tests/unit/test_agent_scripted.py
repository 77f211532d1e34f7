"""The offline scripted model: placeholder by name and text, deterministic, never a stand-in
for a configured endpoint."""

from __future__ import annotations

import logging

import pytest
from langchain_core.messages import HumanMessage, SystemMessage

from troupe_agent.agent import Agent
from troupe_agent.llm import build_chat_model
from troupe_agent.prompts import critique_message, is_approval
from troupe_agent.scripted import PLACEHOLDER_BANNER, ScriptedChatModel
from troupe_operator.api import SCRIPTED_MODEL_NAME, AgentSpec, Role


@pytest.mark.parametrize("role", list(Role))
def test_every_role_gets_a_visible_placeholder_that_names_the_role_and_task(role: Role) -> None:
    model = ScriptedChatModel(role=role)
    messages = [SystemMessage("sys"), HumanMessage("Summarise the quarterly numbers")]
    text = model.invoke(messages).text
    assert text.startswith(PLACEHOLDER_BANNER)
    assert f"Role: {role}." in text
    assert "Summarise the quarterly numbers" in text
    assert model.invoke(messages).text == text  # deterministic


def test_scripted_critic_approves_so_review_loops_end() -> None:
    model = ScriptedChatModel(role=Role.REVIEWER)
    critique = model.invoke([HumanMessage(critique_message("task", "draft"))]).text
    assert is_approval(critique)
    assert PLACEHOLDER_BANNER in critique


def test_scripted_replies_report_no_tokens_and_their_scripted_name() -> None:
    message = ScriptedChatModel().invoke([HumanMessage("hi")])
    assert not message.usage_metadata
    assert message.response_metadata["model_name"] == SCRIPTED_MODEL_NAME


def test_agent_without_endpoint_runs_scripted_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="troupe_agent")
    agent = Agent("demo", AgentSpec.model_validate({"role": "researcher"}), None)
    text, result = agent.run("Find facts", {"brief": "context"})
    assert text.startswith(PLACEHOLDER_BANNER)
    assert result.scripted is True
    assert result.model == SCRIPTED_MODEL_NAME
    assert result.usage.total_tokens == 0
    assert result.calls == 1
    assert result.bytes == len(text.encode())
    assert any("offline scripted model" in r.getMessage() for r in caplog.records)


def test_a_configured_endpoint_never_falls_back_to_the_scripted_model() -> None:
    spec = AgentSpec.model_validate({"model": {"baseURL": "http://127.0.0.1:9/v1"}})
    model = build_chat_model(spec, "key")
    assert not isinstance(model, ScriptedChatModel)
    assert type(model).__name__ == "ChatOpenAI"
    assert model.max_retries == 0  # type: ignore[attr-defined]
