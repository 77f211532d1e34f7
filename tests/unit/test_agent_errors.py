"""Provider failures are classified for the retry policy and reported in one scrubbed line."""

from __future__ import annotations

import json

import httpx2
import openai
import pytest

from troupe_agent.errors import CallFailure, ModelCallError, classify
from troupe_agent.scrub import register_secret

URL = "http://127.0.0.1:9/v1/chat/completions"


def status_error(status: int, message: str, headers: dict[str, str] | None = None) -> Exception:
    request = httpx2.Request("POST", URL)
    response = httpx2.Response(status, headers=headers or {}, request=request)
    return openai.APIStatusError(
        f"Error code: {status}", response=response, body={"error": {"message": message}}
    )


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        (429, True),
        (500, True),
        (502, True),
        (503, True),
        (408, True),
        (400, False),
        (401, False),
        (403, False),
        (404, False),
        (422, False),
    ],
)
def test_http_statuses(status: int, retryable: bool) -> None:
    failure = classify(status_error(status, "nope"))
    assert failure.status == str(status)
    assert failure.retryable is retryable
    assert failure.detail == "nope"


def test_retry_after_is_read_from_the_response() -> None:
    failure = classify(status_error(429, "slow down", {"Retry-After": "2"}))
    assert failure.retry_after == 2.0


def test_context_too_long_is_permanent_and_named() -> None:
    failure = classify(status_error(400, "This model's maximum context length is 8192 tokens"))
    assert not failure.retryable
    assert failure.detail.startswith("context too long")


def test_timeouts_and_connection_errors_are_retryable() -> None:
    request = httpx2.Request("POST", URL)
    timeout = classify(openai.APITimeoutError(request=request))
    connection = classify(openai.APIConnectionError(request=request))
    assert (timeout.status, timeout.retryable) == ("timeout", True)
    assert (connection.status, connection.retryable) == ("connection", True)
    assert classify(TimeoutError()).status == "timeout"


def test_unknown_errors_are_permanent() -> None:
    failure = classify(ValueError("bad"))
    assert (failure.status, failure.retryable) == ("error", False)


def test_model_call_error_is_one_line_naming_agent_model_and_status_without_the_key() -> None:
    key = "sk-test-echoed-key-4471"
    register_secret(key)
    failure = classify(status_error(401, f"Incorrect API key provided: {key}.\nSee docs."))
    error = ModelCallError(
        agent="researcher-1", model="gpt-4o-mini", failure=failure, attempts=1, reason="x"
    )
    message = str(error)
    assert "\n" not in message
    assert 'agent "researcher-1"' in message
    assert 'model "gpt-4o-mini"' in message
    assert "HTTP 401" in message
    assert key not in message
    assert not error.retryable


def test_model_call_error_counts_attempts() -> None:
    failure = CallFailure(status="503", detail="overloaded", retryable=True)
    error = ModelCallError(agent="a", model="m", failure=failure, attempts=4, reason="exhausted")
    assert "after 4 attempts" in str(error)
    assert error.retryable


def test_a_malformed_reply_is_retryable_and_says_so() -> None:
    try:
        json.loads('{"id": "chatcmpl-broken", "choices": [')
    except ValueError as exc:
        failure = classify(exc)
    assert (failure.status, failure.retryable) == ("malformed", True)
    error = ModelCallError(agent="a", model="m", failure=failure, attempts=1)
    assert str(error).startswith('agent "a": model "m" sent a malformed reply: Expecting value')
