"""Reading a Workflow object as the server sent it: phase, tasks, their units, the final tasks.

Objects stay plain dicts and are read field by field, so that a client older or newer than
the operator still reads what both know (the API models refuse unknown fields, as they
must on the way in). A task that expands at run time has units keyed ``NAME.SUFFIX`` in
status (``research.0``, ``pick.judge``); they are listed under their task, numbers in
numeric order. It reads; it decides nothing about what may be done to a run.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from troupe_operator.api import INSTANCE_SEPARATOR
from troupe_operator.api.run_control import RETRY_ANNOTATION

Body = dict[str, Any]
FINISHED: Final = frozenset({"Succeeded", "Failed", "Error"})
PENDING: Final = "Pending"


def metadata(workflow: Body) -> Body:
    return workflow.get("metadata") or {}


def name(workflow: Body) -> str:
    return str(metadata(workflow).get("name") or "")


def annotations_of(workflow: Body) -> dict[str, str]:
    return dict(metadata(workflow).get("annotations") or {})


def status(workflow: Body) -> Body:
    return workflow.get("status") or {}


def phase(workflow: Body) -> str:
    return str(status(workflow).get("phase") or PENDING)


def finished(workflow: Body) -> bool:
    """Whether the run has ended: a final phase, and no ``troupe retry`` the operator has
    yet to answer (until it does, the phase is the one from before the retry)."""
    asked = annotations_of(workflow).get(RETRY_ANNOTATION)
    answered = asked is None or asked == status(workflow).get("retryRequest")
    return phase(workflow) in FINISHED and answered


def unit_statuses(workflow: Body) -> dict[str, Body]:
    """Status of every task and unit, by key."""
    return dict(status(workflow).get("tasks") or {})


def spec_tasks(workflow: Body) -> list[Body]:
    return list((workflow.get("spec") or {}).get("tasks") or [])


def parent_of(key: str) -> str:
    """The task a unit key belongs to (a task's own key is its name)."""
    return key.split(INSTANCE_SEPARATOR, 1)[0]


def _natural(key: str) -> list[Any]:
    parts = re.split(r"(\d+)", key)
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in parts]


def task_order(workflow: Body) -> list[str]:
    """Task names in spec order, then any other task status names (a spec held elsewhere)."""
    names = [str(task.get("name")) for task in spec_tasks(workflow)]
    extra = sorted({parent_of(key) for key in unit_statuses(workflow)} - set(names), key=_natural)
    return names + extra


def units_of(statuses: Mapping[str, Body], task: str) -> list[str]:
    """The keys of a task's units (not the task itself), natural order."""
    prefix = task + INSTANCE_SEPARATOR
    return sorted((key for key in statuses if key.startswith(prefix)), key=_natural)


def final_tasks(tasks: list[Body]) -> list[str]:
    """Tasks no other task depends on: the run's results."""
    needed = {dependency for task in tasks for dependency in task.get("dependsOn") or []}
    return [str(task["name"]) for task in tasks if task.get("name") not in needed]


def timestamp(text: object) -> datetime | None:
    """An RFC 3339 time from status, or None."""
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def seconds_between(start: object, end: object, now: datetime) -> float | None:
    """Seconds from ``start`` to ``end`` (to ``now`` while it has not ended), or None."""
    began = timestamp(start)
    if began is None:
        return None
    return max(0.0, ((timestamp(end) or now) - began).total_seconds())


def total_tokens(entry: Body) -> int | None:
    usage = entry.get("usage") or {}
    value = usage.get("totalTokens")
    return int(value) if isinstance(value, int) else None
