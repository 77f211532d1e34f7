"""What went wrong with a model call, in terms the retry policy and the caller can act on.

A provider failure arrives as one of many exception types (the OpenAI client's
status and connection errors, timeouts). :func:`classify` turns each into a
:class:`CallFailure` (retry or not, a bounded status label, the server's
``Retry-After``), and :class:`ModelCallError` is the one error the rest of the
runtime sees: one scrubbed line naming the agent, the model and the status.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from troupe_agent.retry import parse_retry_after
from troupe_agent.scrub import one_line

RETRYABLE_STATUSES: Final = frozenset({408, 409, 429}) | frozenset(range(500, 600))
"""HTTP statuses another attempt may cure: timeouts, conflicts, rate limits, server errors."""

_CONTEXT_TOO_LONG_MARKERS: Final = ("context_length_exceeded", "maximum context length")


@dataclass(frozen=True)
class CallFailure:
    """One failed model call, classified."""

    status: str
    """Bounded label: an HTTP status such as ``429``, or ``timeout``, ``connection``, ``error``."""
    detail: str
    retryable: bool
    retry_after: float | None = None


class ModelCallError(Exception):
    """A model call failed for good: at once when no retry can help, else after the retries."""

    def __init__(
        self, *, agent: str, model: str, failure: CallFailure, attempts: int, reason: str = ""
    ) -> None:
        self.agent = agent
        self.model = model
        self.failure = failure
        self.attempts = attempts
        status = f"HTTP {failure.status}" if failure.status.isdigit() else failure.status
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        why = f" ({reason})" if reason else ""
        super().__init__(
            one_line(
                f'agent "{agent}": model "{model}" failed{tries}: {status}{why}: {failure.detail}'
            )
        )

    @property
    def retryable(self) -> bool:
        """Whether a later attempt of the whole task may succeed."""
        return self.failure.retryable


def classify(exc: BaseException) -> CallFailure:
    """The failure an exception from a chat model call stands for."""
    status_code = getattr(exc, "status_code", None)
    if isinstance(status_code, int):
        return _classify_status(exc, status_code)
    if isinstance(exc, TimeoutError) or _is_openai_error(exc, "APITimeoutError"):
        return CallFailure(status="timeout", detail="the call timed out", retryable=True)
    if isinstance(exc, ConnectionError) or _is_openai_error(exc, "APIConnectionError"):
        return CallFailure(
            status="connection", detail=f"cannot reach the endpoint: {exc}", retryable=True
        )
    return CallFailure(status="error", detail=f"{type(exc).__name__}: {exc}", retryable=False)


def _classify_status(exc: BaseException, status_code: int) -> CallFailure:
    detail = _provider_message(exc)
    if status_code == 400 and any(m in detail.lower() for m in _CONTEXT_TOO_LONG_MARKERS):
        detail = f"context too long: {detail}"
    response = getattr(exc, "response", None)
    headers: Mapping[str, str] = getattr(response, "headers", None) or {}
    return CallFailure(
        status=str(status_code),
        detail=detail,
        retryable=status_code in RETRYABLE_STATUSES,
        retry_after=parse_retry_after(headers),
    )


def _provider_message(exc: BaseException) -> str:
    """The provider's own error message when the body has one, else the exception text."""
    body: Any = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error", body)
        message = error.get("message") if isinstance(error, dict) else error
        if message:
            return str(message)
    return str(exc)


def _is_openai_error(exc: BaseException, name: str) -> bool:
    """Whether ``exc`` is the OpenAI client's error ``name``, without importing the client."""
    return any(
        cls.__name__ == name and cls.__module__.startswith("openai") for cls in type(exc).__mro__
    )
