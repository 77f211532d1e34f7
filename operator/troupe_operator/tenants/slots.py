"""Sharing a Tenant's task slots (``limits.maxConcurrentTasks``) among its Workflows.

Pure: the shell counts what runs and remembers who waits; this decides who
may start how many attempts now. The free slots (the limit minus every task
Job running in the Tenant's namespaces) are handed out one at a time, each
to the Workflow that wants one with the highest effective priority, then to
the one that runs the fewest tasks counting those it was just given, ties to
the one waiting longest. So two Workflows of equal priority and five parallel
tasks each under a limit of two run one task each rather than one of them
both (max-min fairness, as a fair queue shares a link), a Workflow that was
held back gets the next free slot before the one whose task just finished,
and a Workflow of higher ``spec.priority`` gets free slots before those of
lower priority.

**Aging.** A Workflow's effective priority is its ``spec.priority`` plus one
for every ``AGING_SECONDS`` it has waited for a slot, never beyond
``MAX_PRIORITY``. Ordering by it is ordering by ``since - AGING_SECONDS x
priority`` (to within one step), so a Workflow of priority L goes before every
Workflow of priority H that starts waiting more than (H - L) x ``AGING_SECONDS``
seconds after it: 150 s for a gap of 10, at most 2000 x 15 s (about 8 h 20 min)
across the whole range. A steady stream of higher-priority runs delays it by
what came before that, never forever. One point of priority is worth 15 s of
waiting.

Nothing here is remembered between calls: a restarted operator counts again
from the cluster and shares from there (how long a Workflow had waited is
kept in memory only, so its aging starts again after a restart).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, TypeVar

from troupe_operator.api import MAX_PRIORITY

Key = TypeVar("Key", bound=tuple[str, str])

AGING_SECONDS: Final = 15
"""A Workflow waiting for a slot gains one point of priority per this many seconds."""


@dataclass(frozen=True)
class Claim:
    """One Workflow's standing: attempts it runs, attempts it wants to start, since when it
    waits, and its ``spec.priority``.

    ``since`` orders claims (smaller waited longer) and ages them (seconds, on the
    clock ``share`` is given ``now`` by); ``wants`` is what it was held back by at its
    last reconcile, or any number for the Workflow asking now.
    """

    running: int
    wants: int
    since: float
    priority: int = 0


def effective_priority(claim: Claim, now: float) -> int:
    """The claim's priority, aged by how long it has waited at ``now``."""
    waited = now - claim.since
    if not math.isfinite(waited) or waited <= 0:
        return claim.priority
    return max(claim.priority, min(MAX_PRIORITY, claim.priority + int(waited // AGING_SECONDS)))


def share(limit: int, claims: Mapping[Key, Claim], now: float) -> dict[Key, int]:
    """How many attempts each claimant may start now; claimants given none are left out."""
    free = limit - sum(claim.running for claim in claims.values())
    priority = {key: effective_priority(claim, now) for key, claim in claims.items()}
    given: dict[Key, int] = {}
    for _ in range(max(0, free)):
        wanting = [key for key, claim in claims.items() if claim.wants > given.get(key, 0)]
        if not wanting:
            break
        chosen = min(
            wanting,
            key=lambda key: (
                -priority[key],
                claims[key].running + given.get(key, 0),
                claims[key].since,
                key,
            ),
        )
        given[chosen] = given.get(chosen, 0) + 1
    return given
