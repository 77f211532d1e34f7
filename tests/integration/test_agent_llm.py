"""The agent runtime against the harness's OpenAI-compatible stub on loopback: what each role
sends, retries on 429/500, timeouts, fail-fast on 401, usage accounting, and key hygiene."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.openai_stub import Fault, OpenAIStub
from troupe_agent.agent import Agent, AgentOptions
from troupe_agent.errors import ModelCallError
from troupe_agent.retry import Deadline
from troupe_operator.api import (
    EXIT_PERMANENT,
    EXIT_RETRYABLE,
    INPUT_ENV,
    AgentSpec,
    Role,
    TaskReport,
    TaskResult,
    TokenUsage,
)

TROUPE_AGENT = Path(sys.executable).parent / "troupe-agent"
CANARY_KEY = "tr-canary-KEY-5c1b9e77d2"
"""A distinctive key that is not key-shaped, so only registered-secret scrubbing can hide it."""


def agent_spec(stub: OpenAIStub, role: str = "executor", **model: Any) -> AgentSpec:
    return AgentSpec.model_validate(
        {"role": role, "model": {"name": "stub-model", "baseURL": stub.base_url, **model}}
    )


def agent(spec: AgentSpec, sleeps: list[float] | None = None) -> Agent:
    recorded = sleeps if sleeps is not None else []
    return Agent("agent-1", spec, CANARY_KEY, AgentOptions(sleep=recorded.append))


def sent_max_tokens(body: dict[str, Any]) -> Any:
    """langchain-openai sends ``max_completion_tokens``; older servers know ``max_tokens``."""
    return body.get("max_completion_tokens", body.get("max_tokens"))


def test_an_agent_without_a_key_sends_no_authorization_header_and_says_so(
    openai_stub: OpenAIStub, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", CANARY_KEY)  # what the client library would fall back to
    with caplog.at_level(logging.INFO, logger="troupe_agent.llm"):
        text, _ = Agent("local", agent_spec(openai_stub), None).run("Do the thing", {})
    assert text.startswith("stub reply to:")
    sent = [name.lower() for request in openai_stub.chat_requests for name in request.headers]
    assert sent and "authorization" not in sent
    notes = [r.getMessage() for r in caplog.records if "no API key" in r.getMessage()]
    assert notes == ["agent has no model.apiKeySecretRef: no API key is sent to its endpoint"]
    assert CANARY_KEY not in caplog.text


@pytest.mark.parametrize("role", list(Role))
def test_each_role_sends_its_temperature_max_tokens_and_system_prompt(
    openai_stub: OpenAIStub, role: Role
) -> None:
    spec = agent_spec(openai_stub, role.value)
    text, result = agent(spec).run("Do the thing", {"upstream-task": "earlier output"})
    assert text.startswith("stub reply to:")
    assert result.model == "stub-model" and not result.scripted
    requests = openai_stub.chat_requests
    expected_calls = 1 + 2 * spec.max_review_rounds if spec.effective_self_review else 1
    assert len(requests) == expected_calls == result.calls
    for request in requests:
        body = request.body
        assert body is not None
        assert body["model"] == "stub-model"
        assert body["temperature"] == spec.effective_temperature
        assert sent_max_tokens(body) == spec.effective_max_tokens
        assert body["messages"][0] == {"role": "system", "content": spec.effective_system_prompt}
        assert request.headers["Authorization"] == f"Bearer {CANARY_KEY}"
    assert "earlier output" in requests[0].body["messages"][1]["content"]  # type: ignore[index]


def test_overrides_of_temperature_and_max_tokens_are_sent(openai_stub: OpenAIStub) -> None:
    spec = agent_spec(openai_stub, "researcher", temperature=1.1, maxTokens=77)
    agent(spec).run("x", {})
    body = openai_stub.chat_requests[0].body
    assert body is not None
    assert (body["temperature"], sent_max_tokens(body)) == (1.1, 77)


def test_usage_is_summed_over_draft_critique_and_revise(openai_stub: OpenAIStub) -> None:
    openai_stub.script("first draft here", "The numbers are wrong.", "second draft", "APPROVED")
    _, result = agent(agent_spec(openai_stub, "reviewer")).run("Review it", {})
    requests = openai_stub.chat_requests
    assert len(requests) == 4 == result.calls
    prompt_words = sum(
        len(str(m["content"]).split())
        for r in requests
        for m in r.body["messages"]  # type: ignore[index]
    )
    completion_words = sum(len(reply.split()) for reply in ("first draft here",
                           "The numbers are wrong.", "second draft", "APPROVED"))  # fmt: skip
    assert result.usage == TokenUsage(
        input_tokens=prompt_words,
        output_tokens=completion_words,
        total_tokens=prompt_words + completion_words,
    )
    assert result.latency_seconds > 0


def test_rate_limit_with_retry_after_then_success(openai_stub: OpenAIStub) -> None:
    openai_stub.inject(Fault.rate_limited(retry_after=3))
    sleeps: list[float] = []
    text, _ = agent(agent_spec(openai_stub), sleeps).run("x", {})
    assert text.startswith("stub reply to:")
    assert sleeps == [3.0]
    assert len(openai_stub.chat_requests) == 2


def test_server_errors_fail_after_the_configured_retries(openai_stub: OpenAIStub) -> None:
    openai_stub.inject(*[Fault.server_error() for _ in range(3)])
    sleeps: list[float] = []
    with pytest.raises(ModelCallError) as failed:
        agent(agent_spec(openai_stub, maxRetries=2), sleeps).run("x", {})
    message = str(failed.value)
    assert message == (
        'agent "agent-1": model "stub-model" failed after 3 attempts: HTTP 500 '
        "(retries exhausted): The server had an error (stub)"
    )
    assert len(openai_stub.chat_requests) == 3
    assert len(sleeps) == 2 and 0 <= sleeps[0] <= 0.5 and 0 <= sleeps[1] <= 1.0
    assert failed.value.retryable


def test_a_hung_endpoint_hits_the_per_call_timeout(openai_stub: OpenAIStub) -> None:
    openai_stub.inject(Fault.slow(5))
    started = time.monotonic()
    with pytest.raises(ModelCallError, match="timeout") as failed:
        agent(agent_spec(openai_stub, timeoutSeconds=1, maxRetries=0)).run("x", {})
    assert 0.9 < time.monotonic() - started < 3
    assert failed.value.retryable


def test_the_task_deadline_cuts_a_slow_call_short(openai_stub: OpenAIStub) -> None:
    openai_stub.inject(Fault.slow(5), Fault.slow(5))
    started = time.monotonic()
    with pytest.raises(ModelCallError):
        agent(agent_spec(openai_stub, timeoutSeconds=60)).run("x", {}, Deadline(0.5))
    assert time.monotonic() - started < 2


@pytest.mark.parametrize(
    "malformed",
    [Fault.malformed(), Fault(raw_body=b"{}"), Fault(raw_body=b'{"choices": [{}]}')],
    ids=["truncated-json", "no-choices", "choice-without-message"],
)
def test_a_malformed_reply_is_retried(openai_stub: OpenAIStub, malformed: Fault) -> None:
    openai_stub.inject(malformed)
    sleeps: list[float] = []
    text, _ = agent(agent_spec(openai_stub), sleeps).run("x", {})
    assert text.startswith("stub reply to:")
    assert len(openai_stub.chat_requests) == 2 and len(sleeps) == 1


def test_malformed_replies_fail_retryably_and_say_so(openai_stub: OpenAIStub) -> None:
    openai_stub.inject(Fault.malformed(), Fault.malformed())
    with pytest.raises(ModelCallError) as failed:
        agent(agent_spec(openai_stub, maxRetries=1)).run("x", {})
    assert str(failed.value).startswith(
        'agent "agent-1": model "stub-model" sent a malformed reply after 2 attempts'
    )
    assert failed.value.retryable


def test_unauthorized_fails_at_once(openai_stub: OpenAIStub) -> None:
    openai_stub.inject(Fault.unauthorized())
    sleeps: list[float] = []
    with pytest.raises(ModelCallError) as failed:
        agent(agent_spec(openai_stub), sleeps).run("x", {})
    assert len(openai_stub.chat_requests) == 1 and sleeps == []
    assert "HTTP 401" in str(failed.value) and not failed.value.retryable


def test_context_too_long_fails_at_once_and_says_so(openai_stub: OpenAIStub) -> None:
    openai_stub.inject(Fault.context_length_exceeded())
    with pytest.raises(ModelCallError, match=r"HTTP 400.*context too long"):
        agent(agent_spec(openai_stub)).run("x", {})
    assert len(openai_stub.chat_requests) == 1


PLAN = "PLAN-7f3a: step one"
RESEARCH = "RESEARCH-91bc: the facts"


def run_task_subprocess(
    tmp_path: Path, stub: OpenAIStub, role: str = "executor", **model: Any
) -> tuple[subprocess.CompletedProcess[str], Path, TaskReport]:
    """`troupe-agent task` as ``troupe run`` starts it: upstream outputs from files. The
    template places the plan; the research is a dependency it does not name."""
    task_input = {
        "workflow": "wf",
        "namespace": "default",
        "task": "write",
        "attempt": 1,
        "agentName": "writer",
        "agent": {"role": role, "model": {"baseURL": stub.base_url, **model}},
        "upstream": {"plan": "wf-plan", "research": "wf-research"},
        "apiKeyEnv": "TROUPE_TEST_API_KEY",
    }
    prompt = "Write it following {{ tasks.plan.output }}"
    write = {"name": "write", "agent": "w", "prompt": prompt, "dependsOn": ["plan", "research"]}
    earlier = [{"name": name, "agent": "w", "prompt": "x"} for name in ("plan", "research")]
    spec, outputs, output, termination_log = (
        tmp_path / name for name in ("spec.json", "outputs", "out.json", "term")
    )
    spec.write_text(json.dumps({"tasks": [*earlier, write]}))
    outputs.mkdir()
    for name, text in (("plan", PLAN), ("research", RESEARCH)):
        (outputs / f"wf-{name}.json").write_text(json.dumps({"model": "m", "output": text}))
    env = {**os.environ, INPUT_ENV: json.dumps(task_input), "TROUPE_TEST_API_KEY": CANARY_KEY}
    finished = subprocess.run(
        [TROUPE_AGENT, "task", "--spec", spec, "--outputs-dir", outputs, "--output-file", output,
         "--termination-log", termination_log],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    report = TaskReport.decode(termination_log.read_text())
    assert report is not None, finished.stderr
    assert CANARY_KEY not in finished.stderr + termination_log.read_text()
    return finished, output, report


def test_task_mode_subprocess_writes_the_output_file_and_reports(
    tmp_path: Path, openai_stub: OpenAIStub
) -> None:
    finished, output, report = run_task_subprocess(tmp_path, openai_stub)
    assert finished.returncode == 0, finished.stderr
    written = json.loads(output.read_text())
    text = written.pop("output")
    result = TaskResult.model_validate(written)
    assert text.startswith("stub reply to:") and "step one" in text
    assert result.usage.total_tokens > 0 and result.calls == 1
    assert report.succeeded and report.result == result
    assert report.preview == " ".join(text.split())[:200]
    assert CANARY_KEY not in output.read_text()


def test_each_upstream_output_reaches_the_model_once_in_every_call(
    tmp_path: Path, openai_stub: OpenAIStub
) -> None:
    openai_stub.script("draft", "1. Too short.", "revised draft", "APPROVED")
    finished, _, _ = run_task_subprocess(tmp_path, openai_stub, role="reviewer")
    assert finished.returncode == 0, finished.stderr
    calls = openai_stub.chat_requests
    assert len(calls) == 4  # draft, critique, revise, critique
    for call in calls:
        assert call.body is not None
        sent = "\n".join(str(message["content"]) for message in call.body["messages"])
        assert (sent.count(PLAN), sent.count(RESEARCH)) == (1, 1), sent


def test_a_task_failing_after_a_paid_call_reports_the_usage(
    tmp_path: Path, openai_stub: OpenAIStub
) -> None:
    openai_stub.inject(Fault(), Fault.unauthorized())  # the draft is answered, the critique not
    finished, output, report = run_task_subprocess(tmp_path, openai_stub, role="reviewer")
    assert finished.returncode == EXIT_PERMANENT
    assert not report.succeeded and not output.exists()
    assert report.result is not None and report.result.calls == 1
    assert report.result.usage.total_tokens > 0


def test_task_mode_retries_malformed_replies_and_fails_retryably(
    tmp_path: Path, openai_stub: OpenAIStub
) -> None:
    openai_stub.inject(Fault.malformed(), Fault.malformed())
    finished, _, report = run_task_subprocess(tmp_path, openai_stub, maxRetries=1)
    assert finished.returncode == EXIT_RETRYABLE
    assert len(openai_stub.chat_requests) == 2
    assert 'model "gpt-4o-mini" sent a malformed reply after 2 attempts' in str(report.message)


def test_task_mode_401_is_permanent_after_one_request_and_never_shows_the_key(
    tmp_path: Path, openai_stub: OpenAIStub
) -> None:
    echoing = Fault(401, {"message": f"Incorrect API key provided: {CANARY_KEY}.", "code": None})
    openai_stub.inject(echoing)
    finished, output, report = run_task_subprocess(tmp_path, openai_stub)
    assert finished.returncode == EXIT_PERMANENT
    assert len(openai_stub.chat_requests) == 1
    assert str(report.message).startswith('agent "writer": model "gpt-4o-mini" failed: HTTP 401')
    assert "[REDACTED]" in str(report.message)
    assert not output.exists()
    # The failed call is reported (for the operator's error counts), with nothing used.
    assert report.result is not None and report.result.failed_calls == {"401": 1}
    assert report.result.calls == 0 and report.result.usage.total_tokens == 0
    assert "HTTP 401" in finished.stderr
    sent = openai_stub.chat_requests[0].headers["Authorization"]
    assert sent == f"Bearer {CANARY_KEY}"  # the key did reach the endpoint, and only there
