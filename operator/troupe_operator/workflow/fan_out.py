"""forEach: expanding a task over an upstream list, once, and summing its instances up.

The list itself never reaches the operator. The upstream task's pod reports the
*length* of each list a forEach reads (``TaskReport.counts``, kept in its status as
``counts``); the core expands the parent into that many instances the first time it
is ready and records the number in the parent's status (``items``), so the spec
stays as written and a restarted operator reads the expansion instead of deciding it
again. Each instance's pod reads its item from the upstream output itself. A list
longer than ``maxItems`` is refused, not cut: the parent fails with reason
``TooManyItems`` and a message naming the limit. This module refuses to look at
Jobs: instances are settled as ordinary tasks by the core.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from troupe_operator.api import ForEach, ItemRef, TaskPhase, TaskSpec, TaskStatus
from troupe_operator.workflow.summary import brief
from troupe_operator.workflow.tasks import FINISHED, failed_for_good

TOO_MANY_ITEMS: Final = "TooManyItems"
INSTANCE_FAILED: Final = "InstanceFailed"


def item_ref(for_each: ForEach, index: int) -> ItemRef:
    return ItemRef(task=for_each.list_task, path=list(for_each.list_path), index=index)


def expand(spec: TaskSpec, upstream: TaskStatus) -> int | str:
    """How many instances ``spec`` runs, from its list's upstream status; or why it cannot."""
    assert spec.for_each is not None
    shown = spec.for_each.from_
    counts = upstream.counts or {}
    key = spec.for_each.count_key
    if key not in counts:
        return (
            f"forEach cannot expand: task '{spec.for_each.list_task}' reported no length for "
            f"{shown} "
            "(its pod left no report, or the list is absent)"
        )
    items = counts[key]
    limit = spec.for_each.max_items
    if items > limit:
        return (
            f"forEach refused: {shown} has {items} items, more than forEach.maxItems "
            f"({limit}); raise maxItems (at most 100) or ask for a shorter list"
        )
    return items


def expanded(previous: TaskStatus, items: int, now: datetime) -> TaskStatus:
    """The parent once expanded: Running (or Succeeded at once for an empty list)."""
    if items == 0:
        return previous.model_copy(
            update={
                "phase": TaskPhase.SUCCEEDED,
                "items": 0,
                "started_at": now,
                "finished_at": now,
                "message": "the list was empty: no instances ran",
            }
        )
    return previous.model_copy(
        update={"phase": TaskPhase.RUNNING, "items": items, "started_at": now, "message": None}
    )


def refused(message: str, now: datetime) -> TaskStatus:
    return TaskStatus(
        phase=TaskPhase.FAILED, reason=TOO_MANY_ITEMS, finished_at=now, message=brief(message)
    )


def summary(parent: TaskStatus, instances: dict[str, TaskStatus], now: datetime) -> TaskStatus:
    """The parent's status from its instances': finished once all are, failed if any failed.

    A parent not expanded (not ready yet, skipped, refused) is left as it is."""
    if parent.phase in FINISHED or parent.items is None:
        return parent
    done = [key for key, task in instances.items() if task.phase in FINISHED]
    succeeded = sum(1 for task in instances.values() if task.phase == TaskPhase.SUCCEEDED)
    if len(done) < len(instances):
        message = f"{succeeded} of {len(instances)} instances succeeded, {len(done)} finished"
        return parent.model_copy(update={"phase": TaskPhase.RUNNING, "message": message})
    failed = [key for key in done if instances[key].phase != TaskPhase.SUCCEEDED]
    if not failed:
        message = f"all {len(instances)} instances succeeded"
        return parent.model_copy(
            update={"phase": TaskPhase.SUCCEEDED, "finished_at": now, "message": message}
        )
    first = instances[failed[0]]
    more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
    message = f"instance '{failed[0]}'{more} {first.phase.value.lower()}: {first.message or ''}"
    return failed_for_good(parent, INSTANCE_FAILED, message, now)
