"""Call statistics of one agent pod, for the Agent's status: counts, median latency, tokens.

A :class:`CallWindow` is a model call observer (like the pod's Prometheus
metrics) that keeps counts since start and the latencies and token counts of
the last ``WINDOW`` successful calls, so the median is of recent calls and
memory is bounded. The elected supervisor writes its :meth:`snapshot` into
the Agent's ``status.calls``; Prometheus (``/metrics``) has the full series.
"""

from __future__ import annotations

import collections
import statistics
import threading
from typing import Any, Final

from troupe_agent.usage import CallStats

WINDOW: Final = 1000


class CallWindow:
    """Counts every model call; remembers the last ``WINDOW`` successful ones."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests = 0
        self._errors = 0
        self._recent: collections.deque[tuple[float, int]] = collections.deque(maxlen=WINDOW)

    def call_succeeded(self, model: str, stats: CallStats) -> None:
        with self._lock:
            self._requests += 1
            self._recent.append((stats.latency_seconds, stats.usage.total_tokens))

    def call_failed(self, model: str, status: str) -> None:
        with self._lock:
            self._requests += 1
            self._errors += 1

    def snapshot(self) -> dict[str, Any]:
        """``requests`` and ``errors``; ``latencyP50Seconds`` and ``tokensPerCall`` once a call
        succeeded (left out before: a merge patch would read a null as "delete")."""
        with self._lock:
            recent = list(self._recent)
            snapshot: dict[str, Any] = {"requests": self._requests, "errors": self._errors}
        if recent:
            snapshot["latencyP50Seconds"] = round(statistics.median(s for s, _ in recent), 3)
            snapshot["tokensPerCall"] = round(statistics.fmean(t for _, t in recent), 1)
        return snapshot
