"""A run's absolute deadline (``spec.deadline``): whether it has passed, and what the run says.

The workflow timeout (``timeoutSeconds``) counts from the run's start; a deadline is a
time on the clock, for work that is worthless late, and counts whether the run has started
or not: a run still waiting (for an Agent, a slot, its namespace's Tenant, or suspended)
fails at its deadline too. The core stops the run as it stops a timed-out one (running
Jobs deleted, unfinished tasks cancelled or skipped, phase Failed, reason
``DeadlineExceeded``) and asks to be woken at the deadline. A run whose spec cannot be
resolved yet (its WorkflowTemplate or an input source missing) has no spec to read a
deadline from, and is not failed by one: it waits Pending until it can start, then fails
at once if its deadline has passed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

from troupe_operator.api import WorkflowPhase, WorkflowSpec
from troupe_operator.workflow.verdict import Verdict

DEADLINE_EXCEEDED: Final = "DeadlineExceeded"


def past_deadline(spec: WorkflowSpec, now: datetime) -> Verdict | None:
    """The verdict of a run whose deadline has passed at ``now``; None if it has not."""
    deadline = spec.deadline
    if deadline is None or now < deadline:
        return None
    shown = deadline.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    message = f"its deadline {shown} passed (spec.deadline); the run was stopped"
    return Verdict(WorkflowPhase.FAILED, DEADLINE_EXCEEDED, message)
