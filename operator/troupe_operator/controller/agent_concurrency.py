"""Each capped Agent's cap now: ``maxConcurrency``, or what AIMD makes of it, shown to people.

The rule is the pure ``agents.aimd``; this shell feeds it the reports of the
attempts that finished (each Job once), answers the gate's question "what is the
cap of this Agent now", and shows the answer: the gauge
``troupe_agent_concurrency_limit{namespace,agent}``, the Agent's
``status.concurrency`` (merge patch with the resourceVersion read, every call
under the API timeout, at most once per ``WRITE_INTERVAL_SECONDS`` per Agent) and a
Normal Event ``ConcurrencyAdjusted`` when the cap moved (at most one per Agent per
``EVENT_INTERVAL_SECONDS``; the status always has the latest). After a restart an
adaptive Agent starts from the cap its status kept (a kopf index), not from the
top. Without ``adaptiveConcurrency`` the cap is ``maxConcurrency`` and nothing adapts.
It refuses nothing; a status write that fails is tried again at the next
interval (an Event due with it is not: Events are best effort).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import kopf
from prometheus_client import Gauge

from troupe_operator.agents.aimd import Aimd, Change
from troupe_operator.api import GROUP, VERSION, AgentConcurrency, AgentSpec
from troupe_operator.controller.kube import ApiError
from troupe_operator.workflow import Event, EventType, JobState, ObservedJob

logger = logging.getLogger(__name__)

KEPT_INDEX: Final = "agent_concurrency_kept"
"""kopf index: (namespace, Agent) to the effective cap its status kept."""
WRITE_INTERVAL_SECONDS: Final = 2.0
"""An Agent's status.concurrency is written at most this often."""
EVENT_INTERVAL_SECONDS: Final = 30.0
"""At most one ConcurrencyAdjusted Event per Agent per this many seconds."""
ADJUSTED: Final = "ConcurrencyAdjusted"

LIMIT = Gauge(
    "troupe_agent_concurrency_limit",
    "The cap on an Agent's running task attempts now: model.maxConcurrency, or less while "
    "adaptiveConcurrency follows an endpoint that throttles.",
    ["namespace", "agent"],
)

AgentKey = tuple[str, str]


@dataclass
class _Shown:
    wanted: tuple[int, int]
    """(limit, effective) as they are now."""
    written: tuple[int, int] | None = None
    """(limit, effective) as status.concurrency last said them."""
    reason: str = "model.maxConcurrency"
    adjusted: datetime | None = None
    event: Change | None = None
    event_at: float = -EVENT_INTERVAL_SECONDS


@dataclass
class Concurrency:
    """The caps of a namespace's capped Agents, and what is still to be shown of them.

    ``kept`` is the index of what their status kept; ``running`` counts an Agent's
    attempts now (the gate's count), for its status.
    """

    kept: Mapping[AgentKey, Collection[int]]
    running: Callable[[str, str], int] = lambda namespace, agent: 0
    clock: Callable[[], float] = time.monotonic
    """Paces the Events; ``wall`` dates the changes and orders reports by their start."""
    wall: Callable[[], datetime] = lambda: datetime.now(UTC)
    _aimd: dict[AgentKey, Aimd] = field(default_factory=dict)
    _shown: dict[AgentKey, _Shown] = field(default_factory=dict)
    _limits: dict[AgentKey, int] = field(default_factory=dict)

    def cap(self, key: AgentKey, spec: AgentSpec | None) -> int | None:
        """The Agent's cap now (None: it has none)."""
        limit = spec.model.max_concurrency if spec is not None else None
        if spec is None or limit is None:
            self._aimd.pop(key, None)
            if self._limits.pop(key, None) is not None:
                LIMIT.remove(*key)
                self._shown.pop(key, None)
            return None
        if not spec.model.adaptive_concurrency:
            self._aimd.pop(key, None)
            return self._show(key, limit, limit, None)
        aimd = self._aimd.get(key)
        if aimd is None:
            kept = next(iter(self.kept.get(key, ())), None)
            aimd = self._aimd[key] = Aimd.start(limit, kept)
        aimd.relimit(limit)
        return self._show(key, limit, aimd.effective, None)

    def finished(
        self, namespace: str, jobs: Iterable[ObservedJob], agents: Mapping[str, AgentSpec]
    ) -> None:
        """Count the reports of a run's finished attempts (each Job once) on adaptive Agents."""
        for job in jobs:
            spec = agents.get(job.agent) if job.agent is not None else None
            if spec is None or not spec.model.adaptive_concurrency:
                continue
            if job.report is None or job.state == JobState.ACTIVE:
                continue
            key = (namespace, str(job.agent))
            if key not in self._aimd:
                self.cap(key, spec)
            aimd = self._aimd[key]
            started = job.started_at.timestamp() if job.started_at else None
            change = aimd.report(job.name, job.report, self.wall().timestamp(), started)
            if change is not None:
                self._show(key, aimd.limit, aimd.effective, change)

    def forget(self, key: AgentKey) -> None:
        """The Agent is gone: its gauge and what was still to be shown go with it."""
        self.cap(key, None)

    def _show(self, key: AgentKey, limit: int, effective: int, change: Change | None) -> int:
        LIMIT.labels(*key).set(effective)
        self._limits[key] = limit
        shown = self._shown.setdefault(key, _Shown((limit, effective)))
        shown.wanted = (limit, effective)
        if change is not None:
            shown.event, shown.reason, shown.adjusted = change, change.message(limit), self.wall()
        return effective

    def due(self) -> list[tuple[AgentKey, AgentConcurrency, Event | None]]:
        """What to write now: each Agent's status.concurrency, and an Event if one is due."""
        now, out = self.clock(), []
        for key, shown in list(self._shown.items()):
            event = None
            if shown.event is not None and now - shown.event_at >= EVENT_INTERVAL_SECONDS:
                event = Event(EventType.NORMAL, ADJUSTED, shown.event.message(shown.wanted[0]))
                shown.event, shown.event_at = None, now
            if shown.wanted == shown.written and event is None:
                continue
            limit, effective = shown.wanted
            status = AgentConcurrency(
                limit=limit,
                effective=effective,
                running=self.running(*key),
                reason=shown.reason,
                last_adjusted=shown.adjusted,
            )
            out.append((key, status, event))
        return out

    def written(self, key: AgentKey, status: AgentConcurrency) -> None:
        shown = self._shown.get(key)
        if shown is not None:
            shown.written = (status.limit, status.effective)


Writer = Callable[[AgentKey, AgentConcurrency, Event | None], Any]


async def show(concurrency: Concurrency, write: Writer) -> None:
    """Write what is due every ``WRITE_INTERVAL_SECONDS``, until cancelled."""
    while True:
        await asyncio.sleep(WRITE_INTERVAL_SECONDS)
        for key, status, event in concurrency.due():
            try:
                await write(key, status, event)
            except ApiError as error:
                logger.warning("status.concurrency of Agent %s/%s: %s", *key, error)
                continue
            except Exception:  # never end the loop: the next interval tries again
                logger.exception("status.concurrency of Agent %s/%s", *key)
                continue
            concurrency.written(key, status)


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def register_index(registry: kopf.OperatorRegistry) -> None:
    @kopf.index(GROUP, VERSION, "agents", id=KEPT_INDEX, registry=registry)
    async def index_kept_concurrency(
        namespace: str | None, name: str, status: kopf.Status, **_: Any
    ) -> Any:
        kept = (status.get("concurrency") or {}).get("effective")
        return {(namespace, name): kept} if isinstance(kept, int) and kept >= 1 else {}
