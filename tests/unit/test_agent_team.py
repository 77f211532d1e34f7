"""The team endpoint's pieces that need no server: decisions, bodies, limits, probes, stats."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any, cast

import httpx
import pytest

from troupe_agent.call_window import CallWindow
from troupe_agent.conversations import shortened
from troupe_agent.llm import ChatReply, ModelClient
from troupe_agent.model_probe import probe_model
from troupe_agent.retry import Deadline
from troupe_agent.scripted import PLACEHOLDER_BANNER
from troupe_agent.serve import BadRequest, parse_team_body
from troupe_agent.team import MemberClient, MemberFailed, Team, TeamError
from troupe_agent.telemetry import GenAITelemetry, ModelTarget
from troupe_agent.usage import CallStats
from troupe_operator.api import AgentSpec, TokenUsage

ENDPOINT = AgentSpec.model_validate({"model": {"name": "m", "baseURL": "http://llm.test/v1"}})


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


def _members(handler: Callable[[httpx.Request], httpx.Response]) -> MemberClient:
    http = httpx.Client(transport=httpx.MockTransport(handler))
    return MemberClient({"math": "http://math:8080"}, http, sleep=lambda _: None)


def _reply(status: int, body: dict[str, Any]) -> Callable[[httpx.Request], httpx.Response]:
    return lambda _: httpx.Response(status, json=body)


@pytest.mark.parametrize(
    ("handler", "status", "words"),
    [
        (_reply(403, {"error": "forbidden: caller"}), 403, "member math answered 403: forbidden"),
        (_reply(400, {"error": "bad request"}), 502, "member math answered 400"),
        (_reply(503, {"error": "model down"}), 502, "gave up after 4 attempts"),
        (_refusing, 502, "cannot reach member math: ConnectError (gave up after 4 attempts)"),
    ],
)
def test_a_member_that_fails_is_a_clear_error(
    handler: Callable[[httpx.Request], httpx.Response], status: int, words: str
) -> None:
    with pytest.raises(MemberFailed, match=re.escape(words)) as failed:
        _members(handler).ask("math", "6*7", "request", "Bearer t", Deadline(60))
    assert failed.value.status == status


def test_a_member_is_asked_with_the_callers_token_and_the_request_as_context() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"output": "42", "usage": {"totalTokens": 5}})

    output, usage = _members(answer).ask("math", "6*7", "the request", "Bearer t", Deadline(60))
    assert (output, usage.total_tokens) == ("42", 5)
    assert seen[0].headers["Authorization"] == "Bearer t"
    assert json.loads(seen[0].content) == {
        "prompt": "6*7",
        "context": {"team request": "the request"},
    }


class DelegatingModel:
    """A supervisor model that always delegates to math (a fake of ModelClient.chat)."""

    model_name, scripted, agent_name = "fake", False, "lead"
    target, telemetry = ModelTarget("openai", "fake"), GenAITelemetry()

    def chat(self, messages: Any, deadline: Deadline, tools: Any = ()) -> ChatReply:
        call = {"name": "delegate", "args": {"member": "math", "instruction": "again"}, "id": "1"}
        return ChatReply("", CallStats(TokenUsage(total_tokens=1), 1, 0.0), (call,))  # type: ignore[arg-type]


def test_the_loop_stops_at_its_deadline_with_the_turns_done() -> None:
    spec = AgentSpec.model_validate(
        {"role": "supervisor", "members": ["math"], "invokeTimeoutSeconds": 1}
    )

    def slow(_: httpx.Request) -> httpx.Response:
        time.sleep(1.1)
        return httpx.Response(200, json={"output": "42"})

    team = Team(spec, cast(ModelClient, DelegatingModel()), _members(slow), store=None)
    with pytest.raises(TeamError, match="invokeTimeoutSeconds=1") as failed:
        team.invoke("request", "c-1", "Bearer t")
    assert (failed.value.status, failed.value.reason) == (504, "DeadlineExceeded")
    assert [turn.member for turn in failed.value.done.turns] == ["math"]


def test_a_scripted_supervisor_answers_at_once_and_says_it_is_scripted() -> None:
    spec = AgentSpec.model_validate({"role": "supervisor", "members": ["math"]})
    client = ModelClient("team", spec, None)
    reply = Team(spec, client, _members(_refusing), store=None).invoke("request", "c-1", "")
    wire = reply.to_wire(client.model_name, client.scripted)
    assert wire["output"].startswith(PLACEHOLDER_BANNER)
    assert (wire["scripted"], wire["turns"], wire["iterations"]) == (True, [], 1)
