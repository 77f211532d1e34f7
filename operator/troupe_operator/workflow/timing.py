"""The arithmetic of time in a run: retry backoff, deadlines and durations for people.

Kept in one place so the operator, the local runner and the docs agree on
what "exponential backoff capped at 10 minutes" and "1m05s" mean.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final

MAX_BACKOFF_SECONDS: Final = 600
TASK_DEADLINE_SHARE: Final = 0.9
"""Share of a task's timeout its model work may take, leaving time for a clean exit."""


def backoff_seconds(base: int, attempt: int) -> int:
    """Wait before ``attempt`` (2, 3, ...) starts: base, 2 x base, 4 x base ..., capped."""
    if attempt < 2:
        return 0
    return min(base << min(attempt - 2, 30), MAX_BACKOFF_SECONDS)


def seconds_until(moment: datetime, now: datetime) -> float:
    """Seconds from now to moment, never negative."""
    return max(0.0, (moment - now).total_seconds())


def whole_seconds(moment: datetime) -> datetime:
    """Kubernetes timestamps have whole seconds; finer ones would only bloat status."""
    return moment.replace(microsecond=0)


def after(moment: datetime, seconds: float) -> datetime:
    return moment + timedelta(seconds=seconds)


def format_duration(seconds: float) -> str:
    """``45s``, ``1m05s``, ``2h03m07s``: what kubectl users read in the DURATION column."""
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"
