"""Token usage and latency of model calls, as the provider reported them.

Counts come only from the provider's reply (langchain's ``usage_metadata``,
falling back to the raw ``token_usage`` in ``response_metadata``); nothing is
estimated. A reply without usage (the offline scripted model, or a server that
does not report it) counts as zero tokens. A :class:`UsageTally` keeps the sum
of a task's paid-for calls, so a task that fails after calling the model still
reports what it spent, and counts its failed calls by status (a bounded map:
the operator turns it into ``troupe_task_llm_errors_total``, so task mode's
429s are counted like serve mode's).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from troupe_operator.api import (
    SCRIPTED_MODEL_NAME,
    TaskResult,
    TokenUsage,
    call_status,
    count_failures,
)

if TYPE_CHECKING:
    from langchain_core.messages import BaseMessage


@dataclass(frozen=True)
class CallStats:
    """Tokens, calls and time spent in model calls; adds up across calls."""

    usage: TokenUsage = field(default_factory=TokenUsage)
    calls: int = 0
    latency_seconds: float = 0.0

    def __add__(self, other: CallStats) -> CallStats:
        return CallStats(
            usage=self.usage + other.usage,
            calls=self.calls + other.calls,
            latency_seconds=self.latency_seconds + other.latency_seconds,
        )


def usage_of(message: BaseMessage) -> TokenUsage:
    """The tokens one reply used, as reported by the provider (zero when it reported none)."""
    reported: Any = getattr(message, "usage_metadata", None)
    if reported:
        return _usage(reported.get("input_tokens"), reported.get("output_tokens"))
    raw = message.response_metadata.get("token_usage") or message.response_metadata.get("usage")
    if isinstance(raw, dict):
        return _usage(raw.get("prompt_tokens"), raw.get("completion_tokens"))
    return TokenUsage()


def _usage(input_tokens: Any, output_tokens: Any) -> TokenUsage:
    sent = int(input_tokens or 0)
    received = int(output_tokens or 0)
    return TokenUsage(input_tokens=sent, output_tokens=received, total_tokens=sent + received)


class CallObserver(Protocol):
    """Something that wants to know about every model call (metrics, for instance)."""

    def call_succeeded(self, model: str, stats: CallStats) -> None: ...

    def call_failed(self, model: str, status: str) -> None: ...


class UsageTally:
    """A :class:`CallObserver` that adds up the successful calls and counts the failed ones."""

    def __init__(self) -> None:
        self.model: str | None = None
        self.stats = CallStats()
        self.failed: dict[str, int] = {}
        """Failed calls by status, as ``TaskResult.failed_calls`` holds them (bounded)."""

    def call_succeeded(self, model: str, stats: CallStats) -> None:
        self.model = model
        self.stats += stats

    def call_failed(self, model: str, status: str) -> None:
        """Failed calls return no reply and no usage; they are counted by status."""
        self.model = model
        count_failures(self.failed, call_status(status))

    def completed(self, result: TaskResult) -> TaskResult:
        """``result`` (the successful calls') with the failed calls counted here."""
        return result.model_copy(update={"failed_calls": dict(self.failed)})

    def result(self) -> TaskResult | None:
        """What the calls so far cost and how many failed; None when no call was made."""
        if self.model is None:
            return None
        return TaskResult(
            model=self.model,
            scripted=self.model == SCRIPTED_MODEL_NAME,
            usage=self.stats.usage,
            calls=self.stats.calls,
            latency_seconds=self.stats.latency_seconds,
            failed_calls=dict(self.failed),
        )
