"""Keeping a big Workflow's status inside a size budget.

Full detail for every task is affordable for tens of tasks, not for a
thousand: etcd caps objects near 1.5 MB, and every status write is sent and
stored whole. When the status outgrows the budget, finished tasks are slimmed
in steps, least useful detail first. Only finished tasks are touched, and the
core never reads more than their phase again — except the ``fields`` a
condition not yet decided will read, which are kept — so slimming changes
nothing about the run. A slimmed task's output is still where naming says:
``WorkflowRef.output_config_map(task)``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Final

from troupe_operator.api import TaskStatus, WorkflowStatus
from troupe_operator.api.workflow import MAX_CONDITION_JSON_BYTES
from troupe_operator.workflow.summary import brief
from troupe_operator.workflow.tasks import FINISHED

STATUS_BUDGET_BYTES: Final = 240 * 1024
SLIM_MESSAGE_CHARS: Final = 100
MOST_TASK_BYTES: Final = 4_608 + 3 * MAX_CONDITION_JSON_BYTES + 1_024
"""The most one task's status can take as JSON: capped message, preview and model, each
character escaped to six bytes, a Job and ConfigMap name, timestamps, usage, the fields
conditions read (non-ASCII characters escaped to at most three times their UTF-8 size), and
a supervisor turn's decision or one turn of a supervise loop's record (under 1 KiB: five
delegations of label-sized names; each turn has an entry of its own to count it)."""
MOST_RUN_BYTES: Final = 16_384
"""The most the run-level fields (message, conditions, times, usage) can take as JSON."""


def wire_size(status: WorkflowStatus) -> int:
    return len(json.dumps(status.to_wire()).encode())


def fit_status(
    status: WorkflowStatus,
    budget: int = STATUS_BUDGET_BYTES,
    needed: frozenset[str] = frozenset(),
) -> WorkflowStatus:
    """``status`` unchanged if it fits; otherwise with its finished tasks slimmed.

    ``needed`` are the tasks whose ``fields`` conditions still have to read. A
    status whose tasks cannot add up to the budget is not measured.
    """
    if MOST_RUN_BYTES + MOST_TASK_BYTES * len(status.tasks) <= budget:
        return status
    if wire_size(status) <= budget:
        return status
    slim = _map_finished(status, _without_references)
    if wire_size(slim) <= budget:
        return slim
    slim = _map_finished(slim, _without_fields, keep=needed)
    if wire_size(slim) <= budget:
        return slim
    return _map_finished(slim, _without_preview)


def _map_finished(
    status: WorkflowStatus,
    slim: Callable[[TaskStatus], TaskStatus],
    keep: frozenset[str] = frozenset(),
) -> WorkflowStatus:
    tasks = {
        name: slim(task) if task.phase in FINISHED and name not in keep else task
        for name, task in status.tasks.items()
    }
    return status.model_copy(update={"tasks": tasks})


def _without_fields(task: TaskStatus) -> TaskStatus:
    return task.model_copy(update={"fields": None})


def _without_references(task: TaskStatus) -> TaskStatus:
    """Drop what can be derived or looked up: Job and ConfigMap names, model, timestamps."""
    return task.model_copy(
        update={
            "job": None,
            "output": None,
            "model": None,
            "started_at": None,
            "finished_at": None,
            "message": brief(task.message, SLIM_MESSAGE_CHARS) if task.message else None,
        }
    )


def _without_preview(task: TaskStatus) -> TaskStatus:
    return task.model_copy(update={"preview": None})
