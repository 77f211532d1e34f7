"""An Agent's effective concurrency cap, following what its task attempts report (AIMD).

``model.adaptiveConcurrency`` asks the operator to run fewer of an Agent's
attempts at once when its endpoint pushes back, and more again when it stops:
TCP's congestion control applied to task attempts. Each finished attempt's
``TaskReport`` counts once (by its Job's name):

- throttled (any failed call with status ``429`` or ``timeout``): the cap is
  halved, rounded up (so 3 goes to 2, not below the level that was fine before a
  probe to 3), never below 1; but not for an attempt that started before
  the last halving (it was part of the overload that halving answered), nor, when
  the start is unknown, within ``DECREASE_WINDOW_SECONDS`` of it; so the reports of
  one overload halve it once, not once each;
- clean (it made model calls and none was throttled): one step towards the
  limit per round, a round being as many clean reports as the cap is now
  (additive increase by one per round trip); but back up to the cap at which
  it was last throttled, and past it, only after ``PROBE_ROUNDS`` rounds, so
  that against an endpoint that throttles above K the cap stays at K most of
  the time rather than sawing between K/2 and K+1 (the last throttled level is
  forgotten once the cap has gone past it without throttling);
- anything else (no result, a failure before any call): nothing.

Pure and bounded: it remembers the last ``REPORTS_REMEMBERED`` Job names it
counted and nothing else; it never reads the clock (the caller gives ``now``)
and never refuses a report. Without adaptiveConcurrency there is nothing to
follow: the cap is ``maxConcurrency``, and the shell does not use this.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Final

from troupe_operator.api import TaskReport

THROTTLED: Final = frozenset({"429", "timeout"})
"""Failed-call statuses that mean the endpoint is overloaded."""
DECREASE_WINDOW_SECONDS: Final = 10.0
"""At most one halving per this many seconds."""
PROBE_ROUNDS: Final = 4
"""Rounds of clean reports before the cap goes back to where it was last throttled, or past."""
REPORTS_REMEMBERED: Final = 4096
"""Job names remembered per Agent so that a report read again is not counted again."""

DECREASED: Final = "throttled"
INCREASED: Final = "clean"


@dataclass(frozen=True)
class Change:
    """The cap moved: from what, to what, and why (``DECREASED`` or ``INCREASED``)."""

    before: int
    after: int
    reason: str

    def message(self, limit: int) -> str:
        why = (
            "a task reported 429s or timeouts"
            if self.reason == DECREASED
            else "a round of tasks ran without throttling"
        )
        return f"concurrency cap {self.before} -> {self.after} of {limit}: {why}"


def throttled(report: TaskReport) -> bool | None:
    """Whether the attempt was throttled; None when it says nothing about the endpoint."""
    result = report.result
    if result is None:
        return None
    if any(result.failed_calls.get(status, 0) for status in THROTTLED):
        return True
    return None if result.calls == 0 else False


@dataclass
class Aimd:
    """One Agent's effective cap within [1, ``limit``]."""

    limit: int
    effective: int
    window_seconds: float = DECREASE_WINDOW_SECONDS
    _clean: int = 0
    _decreased_at: float = -math.inf
    _throttled_at: int | None = None
    """The cap when it was last halved (None: not since it went past that)."""
    _seen: OrderedDict[str, None] = field(default_factory=OrderedDict)

    @classmethod
    def start(cls, limit: int, kept: int | None = None) -> Aimd:
        """At ``limit``, or at the value ``kept`` in the Agent's status (a restart)."""
        return cls(limit, min(limit, max(1, kept)) if kept is not None else limit)

    def relimit(self, limit: int) -> None:
        """``maxConcurrency`` changed: keep the cap within it."""
        self.limit = limit
        self.effective = min(self.effective, limit)

    def report(
        self, job: str, report: TaskReport, now: float, started: float | None = None
    ) -> Change | None:
        """Count one attempt's report (once per ``job``; ``started`` on ``now``'s clock);
        the change it made, if any."""
        if job in self._seen:
            return None
        self._seen[job] = None
        if len(self._seen) > REPORTS_REMEMBERED:
            self._seen.popitem(last=False)
        verdict = throttled(report)
        before = self.effective
        if verdict is True:
            self._clean = 0
            if started is not None and started < self._decreased_at:
                return None
            if started is None and now - self._decreased_at < self.window_seconds:
                return None
            self._decreased_at, self._throttled_at = now, before
            self.effective = max(1, math.ceil(before / 2))
            return Change(before, self.effective, DECREASED) if self.effective != before else None
        if verdict is False:
            self._clean += 1
            near = self._throttled_at is not None and before + 1 >= self._throttled_at
            if self._clean >= before * (PROBE_ROUNDS if near else 1) and before < self.limit:
                self._clean = 0
                self.effective = before + 1
                if self._throttled_at is not None and self.effective > self._throttled_at:
                    self._throttled_at = None
                return Change(before, self.effective, INCREASED)
        return None
