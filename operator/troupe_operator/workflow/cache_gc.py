"""Which cache entries of a namespace to delete: the expired, then the oldest beyond the count.

Cached outputs are bounded in number per namespace (``limit``) and in age
(``retention``); the shells (the operator's collector, ``troupe run``'s cache directory)
list their entries and delete what this pure rule names. It never chooses an entry
younger than the retention while the namespace is within its count.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from troupe_operator.workflow.memo import CacheEntry


def to_collect(
    entries: Iterable[CacheEntry], now: datetime, retention: timedelta, limit: int
) -> list[str]:
    """The names to delete: every entry older than ``retention``, then the oldest of the rest
    until at most ``limit`` remain; oldest first."""
    oldest_first = sorted(entries, key=lambda entry: (entry.created_at, entry.name))
    expired = [entry for entry in oldest_first if now - entry.created_at > retention]
    kept = [entry for entry in oldest_first if now - entry.created_at <= retention]
    excess = kept[: max(0, len(kept) - limit)]
    return [entry.name for entry in expired + excess]
