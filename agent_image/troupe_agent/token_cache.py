"""The API server's recent verdicts on bearer tokens, so a burst of calls costs one review.

Serve mode asks the API server about every caller's token (a TokenReview and a
SubjectAccessReview). A client that calls many times a second would otherwise
cost the API server two requests per call; the verdict is kept instead, briefly:

- for ``ttl`` seconds after the review (default ``CACHE_SECONDS``, 5 s), so a
  revoked token or a removed RoleBinding stops working at most that much later,
  and a new grant works at most that much later;
- at most ``max_entries`` verdicts (default ``CACHE_ENTRIES``, 1024), the least
  recently used dropped first, so a flood of made-up tokens costs memory
  bounded by the size, never more (it only evicts; the reviews it causes are the
  API server's to rate-limit).

Keys are the SHA-256 of the token: the cache never holds a token, and its
contents cannot be replayed. It refuses to hold failures (an API outage is not a
verdict) and knows nothing about what a verdict says.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final, Generic, TypeVar

CACHE_SECONDS: Final = 5.0
CACHE_ENTRIES: Final = 1024

Verdict = TypeVar("Verdict")


def _key(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class TokenCache(Generic[Verdict]):
    """Verdicts by token hash, kept ``ttl`` seconds, at most ``max_entries``; thread-safe."""

    def __init__(
        self,
        ttl: float = CACHE_SECONDS,
        max_entries: int = CACHE_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl
        self._max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[bytes, tuple[float, Verdict]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, token: str) -> Verdict | None:
        """The verdict on ``token`` if one was stored less than ``ttl`` seconds ago."""
        key = _key(token)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            expires, verdict = entry
            if self._clock() >= expires:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return verdict

    def put(self, token: str, verdict: Verdict) -> None:
        """Remember ``verdict`` for ``ttl`` seconds, dropping the least recently used if full."""
        key = _key(token)
        with self._lock:
            self._entries[key] = (self._clock() + self._ttl, verdict)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
