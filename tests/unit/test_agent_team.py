"""The team endpoint's pieces that need no server: decisions, bodies, limits, probes, stats."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from troupe_agent.call_window import CallWindow
from troupe_agent.conversations import shortened
from troupe_agent.model_probe import probe_model
from troupe_agent.serve import BadRequest, parse_team_body
from troupe_agent.team import Delegation, Finish, read_decision
from troupe_agent.usage import CallStats
from troupe_operator.api import AgentSpec, TokenUsage

ENDPOINT = AgentSpec.model_validate({"model": {"name": "m", "baseURL": "http://llm.test/v1"}})


@pytest.mark.parametrize(
    ("calls", "text", "decision"),
    [
        (
            [{"name": "delegate", "args": {"member": "math", "instruction": "6*7"}}],
            "",
            Delegation("math", "6*7"),
        ),
        ([{"name": "finish", "args": {"answer": "42"}}], "", Finish("42")),
        ([], "plain text", Finish("plain text")),
    ],
)
def test_the_decision_is_the_tool_the_model_called(
    calls: list[dict[str, Any]], text: str, decision: Delegation | Finish
) -> None:
    assert read_decision(calls, text) == decision


def test_a_tool_not_on_offer_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown tool 'shell'"):
        read_decision([{"name": "shell", "args": {}}], "")


@pytest.mark.parametrize(
    ("body", "refusal"),
    [
        ([], "JSON object"),
        ({"prompt": " "}, "non-empty"),
        ({"prompt": "x", "context": {}}, "unknown fields: context"),
        ({"prompt": "x" * 32769}, "longer than 32768"),
        ({"prompt": "x", "conversationId": "a/b"}, "conversationId"),
        ({"prompt": "x", "conversationId": ""}, "conversationId"),
    ],
)
def test_bad_team_bodies_are_refused(body: Any, refusal: str) -> None:
    with pytest.raises(BadRequest, match=refusal):
        parse_team_body(body)


def test_a_team_body_without_a_conversation_gets_a_new_one() -> None:
    first, second = parse_team_body({"prompt": "x"}), parse_team_body({"prompt": "x"})
    assert first[0] == "x" and first[1] != second[1]
    assert parse_team_body({"prompt": "x", "conversationId": "c-1"}) == ("x", "c-1")


def test_long_text_is_cut_to_the_limit_saying_so() -> None:
    cut = shortened("x" * 5000, 4096)
    assert 4000 < len(cut) <= 4096
    assert cut.endswith("more characters cut: limit 4096]")
    assert shortened("short", 4096) == "short"


def _answering(status: int, body: Any = None) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(lambda _: httpx.Response(status, json=body)))


def _refusing(_: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("refused")


@pytest.mark.parametrize(
    ("http", "status", "reason"),
    [
        (_answering(200, {"data": [{"id": "m"}]}), "True", "ModelReachable"),
        (_answering(200, {"data": [{"id": "other"}]}), "False", "ModelNotFound"),
        (_answering(401, {}), "False", "Unauthorized"),
        (_answering(429, {}), "True", "RateLimited"),
        (_answering(503, {}), "False", "Unavailable"),
        (_answering(404, {}), "Unknown", "ListingUnsupported"),
        (httpx.Client(transport=httpx.MockTransport(_refusing)), "False", "Unreachable"),
    ],
)
def test_the_model_probe_names_what_is_wrong(http: httpx.Client, status: str, reason: str) -> None:
    check = probe_model(ENDPOINT, "sk-secret", http=http)
    assert (check.status, check.reason) == (status, reason)
    assert "sk-secret" not in check.message


def test_an_agent_without_endpoint_is_ready_on_the_scripted_model() -> None:
    assert probe_model(AgentSpec(), None).reason == "ScriptedModel"


def test_call_statistics_count_every_call_and_summarise_the_successful_ones() -> None:
    window = CallWindow()
    assert window.snapshot() == {"requests": 0, "errors": 0}
    for latency, tokens in ((0.1, 10), (0.3, 30), (0.2, 20)):
        window.call_succeeded("m", CallStats(TokenUsage(total_tokens=tokens), 1, latency))
    window.call_failed("m", "429")
    assert window.snapshot() == {
        "requests": 4,
        "errors": 1,
        "latencyP50Seconds": 0.2,
        "tokensPerCall": 20.0,
    }
