"""How long to wait before calling a model again, and how much time a task has left.

The policy is ours rather than the OpenAI client's (which runs with
``max_retries=0``) so that it is the same for every provider and testable:
exponential backoff with full jitter, a server's ``Retry-After`` (seconds,
milliseconds or an HTTP date) honoured over our own guess, and a task
deadline that no wait or call may cross.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Final

MAX_RETRY_AFTER_SECONDS: Final = 120.0
"""Longest server-requested wait we accept; a longer one is treated as this long."""


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, capped, overridden by ``Retry-After``."""

    max_retries: int
    base_delay: float = 0.5
    max_delay: float = 20.0
    jitter: Callable[[], float] = field(default=random.random, compare=False)
    """Source of uniform numbers in [0, 1); a fixed one makes delays predictable in tests."""

    def backoff(self, retry_number: int) -> float:
        """Wait before retry ``retry_number`` (0 for the first): uniform in [0, base·2ⁿ], capped."""
        ceiling = min(self.max_delay, self.base_delay * 2.0**retry_number)
        return ceiling * self.jitter()

    def delay(self, retry_number: int, retry_after: float | None) -> float:
        """The wait before a retry: what the server asked for, else our backoff."""
        if retry_after is not None:
            return min(retry_after, MAX_RETRY_AFTER_SECONDS)
        return self.backoff(retry_number)


def parse_retry_after(
    headers: Mapping[str, str], now: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> float | None:
    """Seconds a server asked us to wait, from ``retry-after-ms`` or ``Retry-After``."""
    lowered = {name.lower(): value for name, value in headers.items()}
    if (millis := _non_negative_float(lowered.get("retry-after-ms"))) is not None:
        return millis / 1000
    value = lowered.get("retry-after")
    if value is None:
        return None
    if (seconds := _non_negative_float(value)) is not None:
        return seconds
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now()).total_seconds())


def _non_negative_float(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if number >= 0 and number == number and number != float("inf") else None


class Deadline:
    """An overall time budget on a monotonic clock; ``None`` seconds means no budget."""

    def __init__(self, seconds: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._ends_at = None if seconds is None else clock() + seconds
        self.seconds = seconds

    def remaining(self) -> float | None:
        """Seconds left (never negative), or ``None`` without a budget."""
        return None if self._ends_at is None else max(0.0, self._ends_at - self._clock())

    def expired(self) -> bool:
        remaining = self.remaining()
        return remaining is not None and remaining <= 0

    def call_timeout(self, per_call: float) -> float:
        """The timeout of the next call: the per-call limit, cut to what is left."""
        remaining = self.remaining()
        return per_call if remaining is None else min(per_call, remaining)

    def allows_wait(self, seconds: float) -> bool:
        """Whether waiting ``seconds`` still leaves time for another call."""
        remaining = self.remaining()
        return remaining is None or seconds < remaining

    def capped(self, seconds: float) -> Deadline:
        """A budget starting now that ends after ``seconds``, or with this one if sooner."""
        remaining = self.remaining()
        return Deadline(seconds if remaining is None else min(seconds, remaining), self._clock)
