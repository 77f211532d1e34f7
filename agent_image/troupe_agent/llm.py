"""One model call, done properly: the right model, our retry policy, usage and telemetry.

The graph asks :class:`ModelClient` for a reply to a list of messages and gets
text plus the call's tokens and latency. Everything else about talking to a
provider lives here: choosing ``ChatOpenAI`` at ``model.baseURL`` or, only when
no endpoint is configured, the offline scripted model; per-call timeouts cut
to the task deadline; retries on 429/5xx/timeouts/connection errors and
malformed replies, with backoff and ``Retry-After``; fail-fast on everything
else; metrics and spans. An Agent without ``model.apiKeySecretRef`` has an
endpoint that takes no key (vLLM, Ollama): no ``Authorization`` header is
sent to it, neither a placeholder nor whatever ``OPENAI_API_KEY`` holds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from troupe_agent.errors import CallFailure, ModelCallError, classify
from troupe_agent.retry import Deadline, RetryPolicy
from troupe_agent.scrub import register_secret
from troupe_agent.telemetry import ChatResponse, GenAITelemetry, ModelTarget
from troupe_agent.usage import CallObserver, CallStats, usage_of
from troupe_operator.api import SCRIPTED_MODEL_NAME, AgentSpec

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import BaseMessage, ToolCall
    from langchain_core.runnables import Runnable

log = logging.getLogger(__name__)

NO_API_KEY: Final = "no-key-configured"
"""What the client library is given when there is no key, as it insists on one; never sent."""


def uses_scripted_model(spec: AgentSpec) -> bool:
    """Whether the Agent runs on the offline scripted model: only when it has no endpoint."""
    return spec.model.base_url is None


def model_target(spec: AgentSpec) -> ModelTarget:
    """The model an Agent calls, as its spans and metrics name it.

    Its ``gen_ai.provider.name`` is ``openai`` (the API every endpoint here speaks,
    whoever serves it), or ``troupe-scripted`` for the offline scripted model.
    """
    if spec.model.base_url is None:  # the offline scripted model (uses_scripted_model)
        return ModelTarget("troupe-scripted", SCRIPTED_MODEL_NAME)
    url = urlsplit(spec.model.base_url)
    try:
        port = url.port or (443 if url.scheme == "https" else 80)
    except ValueError:
        port = None
    return ModelTarget(
        "openai",
        spec.model.name,
        server_address=url.hostname,
        server_port=port,
        temperature=spec.effective_temperature,
        max_tokens=spec.effective_max_tokens,
    )


def build_chat_model(spec: AgentSpec, api_key: str | None) -> BaseChatModel:
    """``ChatOpenAI`` at the Agent's endpoint, or the scripted model when it has none."""
    if spec.model.base_url is None:
        from troupe_agent.scripted import ScriptedChatModel

        log.info("no model.baseURL configured: using the offline scripted model (no LLM is called)")
        return ScriptedChatModel(role=spec.role)
    from langchain_openai import ChatOpenAI
    from openai import Omit

    extra: dict[str, object] = {}
    if not api_key:
        log.info("agent has no model.apiKeySecretRef: no API key is sent to its endpoint")
        extra["extra_headers"] = {"Authorization": Omit()}  # the SDK's way to send none
    return ChatOpenAI(
        model=spec.model.name,
        base_url=spec.model.base_url,
        api_key=api_key or NO_API_KEY,
        temperature=spec.effective_temperature,
        max_tokens=spec.effective_max_tokens,
        timeout=spec.model.timeout_seconds,
        max_retries=0,
        model_kwargs=extra,
    )


@dataclass(frozen=True)
class ChatReply:
    text: str
    stats: CallStats
    tool_calls: tuple[ToolCall, ...] = ()
    """The tools the model chose, when it was offered some (``name``, ``args``, ``id``)."""


class ModelClient:
    """Calls one Agent's model with retries, timeouts, usage accounting and telemetry."""

    def __init__(
        self,
        agent_name: str,
        spec: AgentSpec,
        api_key: str | None,
        *,
        chat_model: BaseChatModel | None = None,
        observers: Sequence[CallObserver] = (),
        telemetry: GenAITelemetry | None = None,
        sleep: Callable[[float], None] = time.sleep,
        retry_policy: RetryPolicy | None = None,
    ) -> None:
        register_secret(api_key)
        self.agent_name = agent_name
        self.scripted = uses_scripted_model(spec)
        self.target = model_target(spec)
        self.model_name = self.target.model
        self._timeout = float(spec.model.timeout_seconds)
        self._chat_model = chat_model or build_chat_model(spec, api_key)
        self._observers = observers
        self.telemetry = telemetry or GenAITelemetry()
        self._sleep = sleep
        self._retry_policy = retry_policy or RetryPolicy(max_retries=spec.model.max_retries)

    def chat(
        self,
        messages: list[BaseMessage],
        deadline: Deadline,
        tools: Sequence[dict[str, Any]] = (),
        parallel: bool = False,
    ) -> ChatReply:
        """The model's reply, retried as the policy allows; raises :class:`ModelCallError`.

        With ``tools`` (OpenAI function schemas) the model must call one of them, or with
        ``parallel`` one or more (parallel tool calls)."""
        retries = 0
        while True:
            if deadline.expired():
                failure = CallFailure(
                    status="deadline", detail="the task deadline passed", retryable=True
                )
                raise self._error(failure, attempts=retries, reason="task deadline")
            timeout = deadline.call_timeout(self._timeout)
            outcome = self._call_once(messages, timeout, tools, parallel)
            if isinstance(outcome, ChatReply):
                return outcome
            attempts = retries + 1
            if not outcome.retryable:
                raise self._error(outcome, attempts, reason="not retryable")
            if retries >= self._retry_policy.max_retries:
                raise self._error(outcome, attempts, reason="retries exhausted")
            delay = self._retry_policy.delay(retries, outcome.retry_after)
            if not deadline.allows_wait(delay):
                raise self._error(outcome, attempts, reason="task deadline leaves no time to retry")
            log.warning(
                "agent %s: model call failed (%s), retry %d/%d in %.2fs",
                self.agent_name,
                outcome.status,
                attempts,
                self._retry_policy.max_retries,
                delay,
            )
            self._sleep(delay)
            retries += 1

    def _call_once(
        self,
        messages: list[BaseMessage],
        timeout: float,
        tools: Sequence[dict[str, Any]],
        parallel: bool,
    ) -> ChatReply | CallFailure:
        started = time.monotonic()
        model: Runnable[list[BaseMessage], BaseMessage] = self._chat_model
        if tools:
            model = self._chat_model.bind_tools(
                tools, tool_choice="required", parallel_tool_calls=parallel
            )
        with self.telemetry.chat_span(self.target) as span:
            try:
                reply = model.invoke(messages, timeout=timeout)
            except Exception as exc:
                failure = classify(exc)
                self.telemetry.record_failure(
                    span, self.target, failure, time.monotonic() - started
                )
                for observer in self._observers:
                    observer.call_failed(self.model_name, failure.status)
                return failure
            stats = CallStats(
                usage=usage_of(reply), calls=1, latency_seconds=time.monotonic() - started
            )
            self.telemetry.record_success(span, self.target, _response(reply, stats))
        for observer in self._observers:
            observer.call_succeeded(self.model_name, stats)
        return ChatReply(
            text=reply.text, stats=stats, tool_calls=tuple(getattr(reply, "tool_calls", None) or ())
        )

    def _error(self, failure: CallFailure, attempts: int, reason: str) -> ModelCallError:
        return ModelCallError(
            agent=self.agent_name,
            model=self.model_name,
            failure=failure,
            attempts=attempts,
            reason=reason,
        )


def _response(reply: BaseMessage, stats: CallStats) -> ChatResponse:
    """The model that answered and why it stopped, as the provider's reply says."""
    metadata = reply.response_metadata
    model, finish = metadata.get("model_name"), metadata.get("finish_reason")
    return ChatResponse(
        stats,
        model=str(model) if model else None,
        finish_reason=str(finish) if finish else None,
    )
