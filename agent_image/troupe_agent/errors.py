"""What went wrong with a model call, in terms the retry policy and the caller can act on.

A provider failure arrives as one of many exception types (the OpenAI client's
status and connection errors, timeouts, and whatever the client raises while
parsing a reply it cannot make sense of). :func:`classify` turns each into a
:class:`CallFailure` (retry or not, a bounded status label, the server's
``Retry-After``), and :class:`ModelCallError` is the one error the rest of the
runtime sees: one scrubbed line naming the agent, the model and the status.

A malformed reply (truncated or invalid JSON, a body without ``choices``) is
the endpoint's fault, like a 5xx, so it is retried; only failures no retry can
cure (400, 401, 403, 404, 422, our own bugs) fail at once.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from troupe_agent.retry import parse_retry_after
from troupe_agent.scrub import one_line

RETRYABLE_STATUSES: Final = frozenset({408, 409, 429}) | frozenset(range(500, 600))
"""HTTP statuses another attempt may cure: timeouts, conflicts, rate limits, server errors."""

MALFORMED_REPLY: Final = "malformed"
"""Status label of a reply the client could not parse."""

_CONTEXT_TOO_LONG_MARKERS: Final = ("context_length_exceeded", "maximum context length")
_REPLY_PARSERS: Final = frozenset({("langchain_openai", "_create_chat_result")})
"""(package, function) of the code that turns a reply body into a message; an exception
raised inside it means the body was malformed."""


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
        if failure.status == MALFORMED_REPLY:
            headline = f"sent a malformed reply{tries}{why}"
        else:
            headline = f"failed{tries}: {status}{why}"
        super().__init__(one_line(f'agent "{agent}": model "{model}" {headline}: {failure.detail}'))

    @property
    def retryable(self) -> bool:
        """Whether a later attempt of the whole task may succeed."""
        return self.failure.retryable


def classify(exc: BaseException) -> CallFailure:
    """The failure an exception from a chat model call stands for."""
    if _is_malformed_reply(exc):
        return CallFailure(
            status=MALFORMED_REPLY, detail=str(exc) or type(exc).__name__, retryable=True
        )
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


def _is_malformed_reply(exc: BaseException) -> bool:
    """Whether ``exc`` arose from parsing a reply body: bad JSON, or JSON of the wrong shape."""
    if isinstance(exc, json.JSONDecodeError) or _is_openai_error(exc, "APIResponseValidationError"):
        return True
    return any(
        (str(frame.f_globals.get("__name__", "")).partition(".")[0], frame.f_code.co_name)
        in _REPLY_PARSERS
        for frame, _ in traceback.walk_tb(exc.__traceback__)
    )


def _is_openai_error(exc: BaseException, name: str) -> bool:
    """Whether ``exc`` is the OpenAI client's error ``name``, without importing the client."""
    return any(
        cls.__name__ == name and cls.__module__.startswith("openai") for cls in type(exc).__mro__
    )
