"""A run's overall state in one place: phase, reason, message, and the conditions from them.

Phase, the Ready/Succeeded/Failed conditions and the workflow Events all say
the same thing in different forms; deriving all of them from one Verdict
keeps them from contradicting each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from troupe_operator.api import Condition, WorkflowPhase
from troupe_operator.workflow.actions import Event, EventType
from troupe_operator.workflow.conditions import set_condition

READY = "Ready"
SUCCEEDED = "Succeeded"
FAILED = "Failed"


@dataclass(frozen=True)
class Verdict:
    """How the run stands. ``blocked`` marks a run that waits on something outside it."""

    phase: WorkflowPhase
    reason: str
    message: str
    blocked: bool = False

    @property
    def finished(self) -> bool:
        return self.phase in (WorkflowPhase.SUCCEEDED, WorkflowPhase.FAILED)


def verdict_conditions(
    conditions: Sequence[Condition], verdict: Verdict, now: datetime, generation: int
) -> list[Condition]:
    """Ready: running or done without a problem. Succeeded / Failed: the outcome, once known."""
    ready = not verdict.blocked and verdict.phase in (
        WorkflowPhase.RUNNING,
        WorkflowPhase.SUCCEEDED,
    )
    failed = verdict.phase in (WorkflowPhase.FAILED, WorkflowPhase.ERROR)
    updated = list(conditions)
    for type_, holds in (
        (READY, ready),
        (SUCCEEDED, verdict.phase == WorkflowPhase.SUCCEEDED),
        (FAILED, failed),
    ):
        updated = set_condition(
            updated, type_, holds, verdict.reason, verdict.message, now, generation
        )
    return updated


def verdict_event(previous: WorkflowPhase | None, verdict: Verdict) -> Event | None:
    """The Event announcing that the run has just ended, if it has."""
    if not verdict.finished or previous == verdict.phase:
        return None
    if verdict.phase == WorkflowPhase.SUCCEEDED:
        return Event(EventType.NORMAL, "WorkflowSucceeded", verdict.message)
    return Event(EventType.WARNING, "WorkflowFailed", verdict.message)
