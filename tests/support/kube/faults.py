"""Faults injected into chosen clients' requests: errors, latency, cut watches, lost events.

Fault tests ask "does the operator survive what a real API server does on a bad day?": 500s
and 503s, 429 with `Retry-After`, requests that hang past a client's timeout, a slow LIST
after a restart, watch streams that end every few seconds, an in-stream `ERROR` event, and
the one watch event that never arrives. Each fault is aimed with a `Target`: a client (its
User-Agent prefix: the operator under test sends `troupe-operator/...`, kopf `kopf/...`),
narrowed by verb (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
`deletecollection`), resource (`jobs`, `workflows/status`), namespace and name. A fault
never hits a client it does not name, so the Job runner and the test's own clients are
left alone unless asked.

How often: `fraction` of the matching requests (drawn from `random.Random(seed)`, so a
failing run replays), at most `count` of them. Request faults act in front of the
emulator's handlers (a kmock reaction of normal priority, so anything a test adds with
kmock's DSL at a higher priority still comes first); watch faults act inside the watch
stream. `injected` counts what was done, per kind and per fault; `clear()` removes all.

Refuses: faults at the TCP level (resets, half-written bodies): every fault here is one a
real API server can produce.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import NoReturn

import attrs
import kmock

from tests.support.kube.dispatch import PassOn, header
from tests.support.kube.errors import server_error
from tests.support.kube.request_info import RequestInfo
from tests.support.kube.resources import KubeObject

EventFilter = Callable[[str, KubeObject], bool]
"""`(event type, object) -> bool`: which watch event a `drop_event` fault drops."""


@attrs.frozen
class Target:
    """Which requests a fault hits: one client, optionally narrowed (empty means any)."""

    client: str
    """A User-Agent prefix, e.g. `troupe-operator` or `kopf`."""
    verbs: frozenset[str] = attrs.field(default=frozenset(), converter=frozenset)
    resource: str = ""
    """A plural, `plural/subresource` (`workflows/status`), or "" for any request."""
    namespace: str = ""
    name: str = ""

    def matches(self, user_agent: str, info: RequestInfo) -> bool:
        return (
            user_agent.startswith(self.client)
            and (not self.verbs or info.verb in self.verbs)
            and (not self.resource or info.full_resource == self.resource)
            and (not self.namespace or info.namespace == self.namespace)
            and (not self.name or info.name == self.name)
        )


@dataclass(eq=False)
class Fault:
    """One injected fault: what it hits, how often, and how often it has struck."""

    kind: str
    target: Target
    fraction: float = 1.0
    count: int | None = None
    injected: int = 0
    seconds: float = 0.0
    status: int | None = None
    retry_after: int | None = None
    event_filter: EventFilter | None = None
    dropped_versions: set[str] = field(default_factory=set)
    active: bool = True

    def strikes(self, rng: random.Random) -> bool:
        """Decide for one matching request (or stream, or event), and count it if so."""
        if not self.active or (self.count is not None and self.injected >= self.count):
            return False
        if self.fraction < 1.0 and rng.random() >= self.fraction:
            return False
        self.injected += 1
        return True


@dataclass(frozen=True)
class WatchPlan:
    """What the faults do to one watch stream."""

    cut: Fault | None
    error_first: bool
    drops: Callable[[dict[str, object]], bool]

    @property
    def cut_after(self) -> float | None:
        return self.cut.seconds if self.cut is not None else None

    def record_cut(self) -> None:
        if self.cut is not None and self.cut.active:
            self.cut.injected += 1


class FaultInjector:
    def __init__(self, seed: int = 0) -> None:
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._cleared: Counter[str] = Counter()

    # For tests (any thread).

    def fail(
        self,
        target: Target,
        status: int = 500,
        *,
        retry_after: int | None = None,
        fraction: float = 1.0,
        count: int | None = None,
    ) -> Fault:
        """Answer matching requests with `status` and a `Status` body (429: `Retry-After`)."""
        return self._add(
            Fault("fail", target, fraction, count, status=status, retry_after=retry_after)
        )

    def delay(
        self,
        target: Target,
        seconds: float,
        *,
        then_fail: int | None = None,
        fraction: float = 1.0,
        count: int | None = None,
    ) -> Fault:
        """Hold matching requests for `seconds`, then serve them (or fail with `then_fail`).

        A long delay is a hang: a client that gives up meanwhile closes the connection, and
        its request is cancelled, not applied.
        """
        return self._add(Fault("delay", target, fraction, count, seconds=seconds, status=then_fail))

    def cut_watches(self, target: Target, every: float) -> Fault:
        """End each matching watch stream `every` seconds after it starts."""
        return self._add(Fault("watch-cut", target, seconds=every))

    def watch_error(self, target: Target, *, count: int = 1) -> Fault:
        """Send an `ERROR` event (Status 500) on the next matching watch streams, then end them."""
        return self._add(Fault("watch-error", target, count=count))

    def drop_event(self, target: Target, event_filter: EventFilter, *, count: int = 1) -> Fault:
        """Never deliver the first `count` events accepted by `event_filter` to the target.

        The object is written normally; a list shows it, only the event is lost (live or
        replayed on a resumed watch).
        """
        return self._add(Fault("drop-event", target, count=count, event_filter=event_filter))

    def seed(self, seed: int) -> None:
        self._rng.seed(seed)

    @property
    def injected(self) -> Counter[str]:
        """How many times each kind of fault struck (including cleared faults)."""
        counts = Counter(self._cleared)
        for fault in self._current():
            counts[fault.kind] += fault.injected
        return +counts

    def clear(self) -> None:
        """Remove every fault (a stream already open still ends at its cut time)."""
        with self._lock:
            for fault in self._faults:
                fault.active = False
                self._cleared[fault.kind] += fault.injected
            self._faults = []

    # For the emulator (its event loop).

    def targets(self, request: kmock.Request) -> bool:
        """A kmock criterion: is any request fault aimed at this request?"""
        return bool(self._aimed_at(request, {"fail", "delay"}))

    async def intercept(self, request: kmock.Request) -> NoReturn:
        """A kmock payload: delay and/or fail the request, else pass it on to be served."""
        for fault in self._aimed_at(request, {"fail", "delay"}):
            if not fault.strikes(self._rng):
                continue
            if fault.seconds:
                await asyncio.sleep(fault.seconds)
            if fault.status is not None:
                raise server_error(fault.status, fault.retry_after)
        raise PassOn

    def watch_plan(self, request: kmock.Request) -> WatchPlan:
        faults = self._aimed_at(request, {"watch-cut", "watch-error", "drop-event"})
        cuts = [fault for fault in faults if fault.kind == "watch-cut"]
        errors = [fault for fault in faults if fault.kind == "watch-error"]
        drops = [fault for fault in faults if fault.kind == "drop-event"]
        return WatchPlan(
            cut=min(cuts, key=lambda fault: fault.seconds, default=None),
            error_first=any(fault.strikes(self._rng) for fault in errors),
            drops=lambda event: any(self._drops(fault, event) for fault in drops),
        )

    def _drops(self, fault: Fault, event: dict[str, object]) -> bool:
        obj = event.get("object")
        if not isinstance(obj, dict) or fault.event_filter is None:
            return False
        version = str((obj.get("metadata") or {}).get("resourceVersion"))
        if version in fault.dropped_versions:
            return fault.active
        if fault.event_filter(str(event.get("type")), obj) and fault.strikes(self._rng):
            fault.dropped_versions.add(version)
            return True
        return False

    def _add(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults = [*self._faults, fault]
        return fault

    def _current(self) -> list[Fault]:
        with self._lock:
            return self._faults

    def _aimed_at(self, request: kmock.Request, kinds: Collection[str]) -> list[Fault]:
        faults = [fault for fault in self._current() if fault.kind in kinds]
        if not faults:
            return []
        user_agent = header(request, "User-Agent")
        info = RequestInfo.of_request(request)
        return [fault for fault in faults if fault.target.matches(user_agent, info)]
