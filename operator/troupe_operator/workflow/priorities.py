"""Which ready attempt of a run starts first when its limits let only some start.

Every attempt the core wants to start (a task's, an instance's, a retry) is ordered by:

1. priority, higher first: the task's own ``priority``, else the Workflow's (the units of
   an expanded task, its instances, candidates, judge, turns and delegations, have their
   task's);
2. the remaining critical path, longer first: how many tasks the longest path from the
   task to the end of the DAG holds, itself included (``dag.remaining_path``), so the work
   that holds the run up longest goes first; a unit counts as its task;
3. age, older first: since when the attempt waits, as status records it
   (``tasks.T.waiting.since``, written the first time it is held back, kept while it waits
   for whatever reason); one not held back before is as old as now;
4. the name, in natural order (``fan.2`` before ``fan.10``), so the order is stable.

Retries get no precedence of their own: a retry is ready once its backoff has passed and
is ordered like a first attempt, so a failing task never jumps ahead of a more important
one, and one that has waited for a slot keeps its place ahead of a retry that comes later.

The core walks this order once per decision: the Workflow's ``parallelism`` takes the first
attempts, a task's own cap (a forEach's ``parallelism``, a supervise loop's
``maxConcurrent``) and a missing Agent skip an attempt without holding back those after it,
and the shell's or the Tenant's free slots go to the first of what is left. This module
only orders one run's attempts and says why each waits; how Workflows share a Tenant's
slots is ``troupe_operator.tenants.slots``. It reads no clock: ``now`` is the observation's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from troupe_operator import dag
from troupe_operator.api import TaskStatus, TaskWaiting, WorkflowSpec
from troupe_operator.workflow.units import parent_of

Wanted = tuple[str, int]
"""A unit's key and the attempt of it to start."""

_DIGITS = re.compile(r"(\d+)")


def natural(name: str) -> tuple[tuple[int, int, str], ...]:
    """A sort key that orders the numbers in a name by value: ``t2`` before ``t10``."""
    return tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part)
        for part in _DIGITS.split(name)
        if part
    )


@dataclass(frozen=True)
class Precedence:
    """The order of one run's ready attempts (see the module's docstring)."""

    priorities: Mapping[str, int]
    """Each spec task's effective priority."""
    paths: Mapping[str, int]
    """Each spec task's remaining critical path."""

    @classmethod
    def of(cls, spec: WorkflowSpec) -> Precedence:
        return cls(
            priorities={
                task.name: (spec.priority or 0) if task.priority is None else task.priority
                for task in spec.tasks
            },
            paths=dag.remaining_path({task.name: task.depends_on for task in spec.tasks}),
        )

    def priority(self, key: str) -> int:
        """The effective priority of a unit (a task, or an instance of one)."""
        return self.priorities[parent_of(key)]

    def order(
        self, wanted: Sequence[Wanted], tasks: Mapping[str, TaskStatus], now: datetime
    ) -> list[Wanted]:
        """``wanted`` first to last."""

        def key(item: Wanted) -> tuple[int, int, datetime, tuple[tuple[int, int, str], ...]]:
            name = item[0]
            waiting = tasks[name].waiting
            since = waiting.since if waiting is not None else now
            return -self.priority(name), -self.paths[parent_of(name)], since, natural(name)

        return sorted(wanted, key=key)

    def mark_waiting(
        self, tasks: Mapping[str, TaskStatus], waiting: Mapping[str, str], now: datetime
    ) -> dict[str, TaskStatus]:
        """``tasks`` with ``waiting`` set on each unit held back (``waiting`` gives why),
        keeping since when it waits, and cleared on every other."""
        marked = {}
        for name, task in tasks.items():
            reason = waiting.get(name)
            was = task.waiting
            now_waiting = (
                None
                if reason is None
                else TaskWaiting(
                    reason=reason,
                    since=was.since if was is not None else now,
                    priority=self.priority(name),
                )
            )
            marked[name] = (
                task if now_waiting == was else task.model_copy(update={"waiting": now_waiting})
            )
        return marked
