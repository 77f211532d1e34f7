"""Watch fan-out with per-resource history, so a watch can resume from a `resourceVersion`.

kmock's watch always starts with the full current state and then follows a bus shared by
every watcher of the resource, checking only name and namespace. Here each watch gets
only its own matching events, starting after the requested `resourceVersion` when one is
given (replayed from a bounded history; older versions answer 410 Gone), and a labelled
watch sees ADDED/DELETED when an object starts/stops matching, as on a real server.

Memory: the history is a bounded deque per resource; a watcher holds a queue only while
its HTTP stream is open and is removed when the stream ends.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
from collections.abc import Iterator
from dataclasses import dataclass, field

from tests.support.kube.errors import gone
from tests.support.kube.resources import KubeObject
from tests.support.kube.selectors import ObjectFilter


@dataclass(frozen=True)
class Change:
    """One committed write: the new state (or last state, when deleted) and the previous one."""

    resource_version: int
    kind: str  # ADDED, MODIFIED, DELETED
    obj: KubeObject
    old: KubeObject | None


@dataclass(eq=False)
class Watcher:
    filter: ObjectFilter
    queue: asyncio.Queue[dict[str, object] | None] = field(default_factory=asyncio.Queue)

    def offer(self, change: Change) -> None:
        """Queue the event this watcher sees for the change, if any."""
        now = self.filter.matches(change.obj) and change.kind != "DELETED"
        before = change.old is not None and self.filter.matches(change.old)
        if change.kind == "DELETED":
            kind = "DELETED" if self.filter.matches(change.obj) else None
        elif now:
            kind = "MODIFIED" if before else "ADDED"
        else:
            kind = "DELETED" if before else None
        if kind is not None:
            self.queue.put_nowait({"type": kind, "object": change.obj})

    def close(self) -> None:
        self.queue.put_nowait(None)


class WatchHub:
    def __init__(self, history_limit: int = 20_000) -> None:
        self._history_limit = history_limit
        self._history: dict[tuple[str, str], collections.deque[Change]] = collections.defaultdict(
            lambda: collections.deque(maxlen=history_limit)
        )
        self._forgotten_up_to: dict[tuple[str, str], int] = collections.defaultdict(int)
        self._watchers: dict[tuple[str, str], set[Watcher]] = collections.defaultdict(set)

    def publish(self, key: tuple[str, str], change: Change) -> None:
        history = self._history[key]
        if len(history) == self._history_limit:
            self._forgotten_up_to[key] = history[0].resource_version
        history.append(change)
        for watcher in self._watchers[key]:
            watcher.offer(change)

    def subscribe(self, key: tuple[str, str], filter: ObjectFilter, since: int | None) -> Watcher:
        """A watcher fed with changes after `since` (replayed now) and all later ones."""
        if since is not None and since < self._forgotten_up_to[key]:
            raise gone(f"too old resource version: {since} ({self._forgotten_up_to[key]})")
        watcher = Watcher(filter)
        if since is not None:
            for change in self._changes_after(key, since):
                watcher.offer(change)
        self._watchers[key].add(watcher)
        return watcher

    def unsubscribe(self, key: tuple[str, str], watcher: Watcher) -> None:
        self._watchers[key].discard(watcher)

    def close_all(self) -> None:
        for watchers in self._watchers.values():
            for watcher in watchers:
                watcher.close()

    @property
    def watcher_count(self) -> int:
        return sum(len(watchers) for watchers in self._watchers.values())

    def _changes_after(self, key: tuple[str, str], since: int) -> Iterator[Change]:
        history = self._history[key]
        start = bisect.bisect_right(history, since, key=lambda change: change.resource_version)
        for index in range(start, len(history)):
            yield history[index]
