"""Sharing a Tenant's task slots (``limits.maxConcurrentTasks``) fairly among its Workflows.

Pure: the shell counts what runs and remembers who waits; this decides who
may start how many attempts now. The free slots (the limit minus every task
Job running in the Tenant's namespaces) are handed out one at a time, each
to the Workflow that wants one and runs the fewest tasks counting those it
was just given, ties to the one waiting longest. So two Workflows of five
parallel tasks under a limit of two run one task each rather than one of
them both (max-min fairness, as a fair queue shares a link), and a Workflow
that was held back gets the next free slot before the one whose task just
finished. Nothing here is remembered between calls: a restarted operator
counts again from the cluster and shares from there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

Key = TypeVar("Key", bound=tuple[str, str])


@dataclass(frozen=True)
class Claim:
    """One Workflow's standing: attempts it runs, attempts it wants to start, since when.

    ``since`` only orders claims (smaller waited longer); ``wants`` is what it
    was held back by at its last reconcile, or any number for the Workflow
    asking now.
    """

    running: int
    wants: int
    since: float


def share(limit: int, claims: Mapping[Key, Claim]) -> dict[Key, int]:
    """How many attempts each claimant may start now; claimants given none are left out."""
    free = limit - sum(claim.running for claim in claims.values())
    given: dict[Key, int] = {}
    for _ in range(max(0, free)):
        wanting = [key for key, claim in claims.items() if claim.wants > given.get(key, 0)]
        if not wanting:
            break
        chosen = min(
            wanting,
            key=lambda key: (claims[key].running + given.get(key, 0), claims[key].since, key),
        )
        given[chosen] = given.get(chosen, 0) + 1
    return given
