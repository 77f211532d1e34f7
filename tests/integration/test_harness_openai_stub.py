"""langchain-openai's ChatOpenAI works against the stub, including faults and streaming."""

from __future__ import annotations

import json
import time

import openai
import pytest
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

from tests.support.openai_stub import Fault, OpenAIStub, ToolCall


def _chat(stub: OpenAIStub, **options: object) -> ChatOpenAI:
    settings: dict[str, object] = {
        "model": "stub-model",
        "base_url": stub.base_url,
        "api_key": "sk-test-dummy",
    }
    return ChatOpenAI(**(settings | options))  # type: ignore[arg-type]


def test_reply_with_usage_and_recorded_request(openai_stub: OpenAIStub) -> None:
    chat = _chat(openai_stub, temperature=0.3, max_tokens=1500)
    reply = chat.invoke([SystemMessage("be brief"), HumanMessage("what is a DAG?")])
    assert reply.content == "stub reply to: what is a DAG?"
    assert reply.usage_metadata is not None
    assert reply.usage_metadata["input_tokens"] == 6
    assert reply.usage_metadata["output_tokens"] == 7
    assert reply.usage_metadata["total_tokens"] == 13
    [request] = openai_stub.chat_requests
    assert request.body is not None
    assert request.body["temperature"] == 0.3
    assert request.body.get("max_completion_tokens", request.body.get("max_tokens")) == 1500
    assert request.body["messages"][-1] == {"role": "user", "content": "what is a DAG?"}
    assert request.headers["Authorization"] == "Bearer sk-test-dummy"


def test_scripted_replies_are_consumed_in_order(openai_stub: OpenAIStub) -> None:
    openai_stub.script("first", lambda body: f"second ({len(body['messages'])} messages)")
    chat = _chat(openai_stub)
    assert [chat.invoke("a").content, chat.invoke("b").content, chat.invoke("c").content] == [
        "first",
        "second (1 messages)",
        "stub reply to: c",
    ]


def test_rate_limit_with_retry_after_is_retried_by_the_client(openai_stub: OpenAIStub) -> None:
    openai_stub.inject(Fault.rate_limited(retry_after=1))
    started = time.monotonic()
    reply = _chat(openai_stub, max_retries=2).invoke("hello")
    assert reply.content == "stub reply to: hello"
    assert time.monotonic() - started >= 0.9, "Retry-After: 1 is honoured"
    assert len(openai_stub.chat_requests) == 2


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault.unauthorized(), openai.AuthenticationError),
        (Fault.context_length_exceeded(), openai.BadRequestError),
        (Fault.server_error(), openai.InternalServerError),
    ],
)
def test_errors_reach_the_client(
    openai_stub: OpenAIStub, fault: Fault, error: type[Exception]
) -> None:
    openai_stub.inject(fault)
    with pytest.raises(error):
        _chat(openai_stub, max_retries=0).invoke("hello")


def test_a_failing_model_fails_every_call_while_others_answer(openai_stub: OpenAIStub) -> None:
    openai_stub.fail_model("down-model", Fault.unavailable())
    for _ in range(2):
        with pytest.raises(openai.InternalServerError, match="503"):
            _chat(openai_stub, model="down-model", max_retries=0).invoke("hello")
    assert _chat(openai_stub).invoke("hello").content == "stub reply to: hello"


def test_slow_and_malformed_replies(openai_stub: OpenAIStub) -> None:
    openai_stub.inject(Fault.slow(5))
    with pytest.raises(openai.APITimeoutError):
        _chat(openai_stub, max_retries=0, timeout=0.3).invoke("hello")
    openai_stub.inject(Fault.malformed())
    with pytest.raises(Exception):  # noqa: B017 - whatever the client raises on a broken body
        _chat(openai_stub, max_retries=0).invoke("hello")


def test_streaming_with_usage(openai_stub: OpenAIStub) -> None:
    chat = _chat(openai_stub, stream_usage=True)
    chunks = list(chat.stream("tell me a story"))
    assert "".join(str(chunk.content) for chunk in chunks) == "stub reply to: tell me a story"
    usage = [chunk.usage_metadata for chunk in chunks if chunk.usage_metadata]
    assert usage and usage[-1]["total_tokens"] == 4 + 7
    assert openai_stub.chat_requests[0].body == openai_stub.chat_requests[0].body | {"stream": True}


class Verdict(BaseModel):
    """Whether the work is done."""

    done: bool
    reason: str


@pytest.mark.parametrize("streaming", [False, True], ids=["plain", "streamed"])
def test_a_tool_call_reply_is_a_structured_decision(
    openai_stub: OpenAIStub, streaming: bool
) -> None:
    arguments = {"done": True, "reason": "every task passed"}
    openai_stub.script(ToolCall("Verdict", arguments))
    chat = _chat(openai_stub, streaming=streaming, stream_usage=True)
    reply = chat.bind_tools([Verdict], tool_choice="required").invoke("is it done?")
    assert reply.content == ""
    assert reply.tool_calls == [
        {"name": "Verdict", "args": arguments, "id": "call_stub_1", "type": "tool_call"}
    ]
    assert reply.response_metadata["finish_reason"] == "tool_calls"
    assert reply.usage_metadata is not None
    assert reply.usage_metadata["output_tokens"] == len(json.dumps(arguments).split())
    [request] = openai_stub.chat_requests
    assert request.body is not None
    assert bool(request.body.get("stream")) == streaming
    assert request.body["tool_choice"] == "required"
    assert [tool["function"]["name"] for tool in request.body["tools"]] == ["Verdict"]


def test_the_default_reply_may_stream_several_tool_calls() -> None:
    calls = [ToolCall("Verdict", {"done": False, "reason": f"try {n}"}) for n in (1, 2)]
    with OpenAIStub(reply=lambda body: calls) as stub:
        chat = _chat(stub).bind_tools([Verdict], tool_choice="required")
        chunks = list(chat.stream("is it done?"))
    reply = sum(chunks[1:], chunks[0])
    assert [(call["id"], call["args"]) for call in reply.tool_calls] == [
        ("call_stub_1", {"done": False, "reason": "try 1"}),
        ("call_stub_2", {"done": False, "reason": "try 2"}),
    ]


def test_models_endpoint(openai_stub: OpenAIStub) -> None:
    client = openai.OpenAI(base_url=openai_stub.base_url, api_key="sk-test-dummy")
    assert [model.id for model in client.models.list()] == ["stub-model"]
    client.close()


def test_limit_concurrency_answers_429_above_the_bound(openai_stub: OpenAIStub) -> None:
    import concurrent.futures

    openai_stub.limit_concurrency(2, hold=1.0)
    client = openai.OpenAI(base_url=openai_stub.base_url, api_key="k", max_retries=0)

    def call(_: int) -> int:
        try:
            client.chat.completions.create(
                model="stub-model", messages=[{"role": "user", "content": "hi"}]
            )
        except openai.RateLimitError:
            return 429
        return 200

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        codes = sorted(pool.map(call, range(4)))
    assert codes == [200, 200, 429, 429]
    assert openai_stub.throttled == 2
    assert openai_stub.most_in_flight == 2
