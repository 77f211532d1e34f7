"""Keeping a big Workflow's status inside a size budget.

Full detail for every task is affordable for tens of tasks, not for a
thousand: etcd caps objects near 1.5 MB, and every status write is sent and
stored whole. When the status outgrows the budget, finished tasks are slimmed
in steps, least useful detail first. Only finished tasks are touched, and the
core never reads more than their phase again — except the ``fields`` a
condition not yet decided will read, which are kept — so slimming changes
nothing about the run. A slimmed task's output is still where naming says:
``WorkflowRef.output_config_map(task)``, or, for a task served from the cache, in the entry
its ``cached`` names (the entry kept, its key and time dropped). Next go the output digests
no unfinished memoized task's key needs (a finished run needs none).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from functools import partial
from typing import Final

from troupe_operator.api import CachedFrom, TaskSpec, TaskStatus, WorkflowStatus
from troupe_operator.api.workflow import MAX_CONDITION_JSON_BYTES, MAX_RETRIES
from troupe_operator.workflow.summary import brief
from troupe_operator.workflow.tasks import FINISHED

STATUS_BUDGET_BYTES: Final = 240 * 1024
SLIM_MESSAGE_CHARS: Final = 100
MOST_AGENT_NAME_BYTES: Final = 253 + 3
"""An Agent's name (a DNS subdomain) in a JSON list: quotes and a comma."""
MOST_JUDGING_BYTES: Final = 4_608
"""The most a candidates task's list of candidates (10, each with 10 scores) or a judge's
scores take as JSON; one entry has one or the other."""
MOST_LOOP_BYTES: Final = 1_024
"""The most a supervisor turn's decision or one turn of a supervise loop's record takes
(five delegations of label-sized names; each turn has an entry of its own to count it)."""
MOST_WAITING_BYTES: Final = 128
"""Why a ready task waits (a reason of at most 64 characters), since when, its priority."""
MOST_CACHE_BYTES: Final = 256
"""A memoized task's output digest (64 characters) and where it was served from (an entry's
name and key hash of at most 53 and 40 characters, a time)."""
MOST_TASK_BYTES: Final = (
    4_608
    + MOST_WAITING_BYTES
    + MOST_CACHE_BYTES
    + 3 * MAX_CONDITION_JSON_BYTES
    + (MAX_RETRIES + 1) * MOST_AGENT_NAME_BYTES
    + max(MOST_JUDGING_BYTES, MOST_LOOP_BYTES)
)
"""The most one task's status can take as JSON: capped message, preview and model, each
character escaped to six bytes, a Job and ConfigMap name, timestamps, usage, the fields
conditions read (non-ASCII characters escaped to at most three times their UTF-8 size), the
Agent of each attempt, and candidates or scores, or a decision or a turn's record (an entry
has one of them at most), why it waits to start, and its digest and cache entry."""
MOST_RUN_BYTES: Final = 16_384
"""The most the run-level fields (message, conditions, times, usage) can take as JSON."""


def wire_size(status: WorkflowStatus) -> int:
    return len(json.dumps(status.to_wire()).encode())


def fit_status(
    status: WorkflowStatus,
    budget: int = STATUS_BUDGET_BYTES,
    needed: frozenset[str] = frozenset(),
    specs: Mapping[str, TaskSpec] | None = None,
    digests: frozenset[str] = frozenset(),
) -> WorkflowStatus:
    """``status`` unchanged if it fits; otherwise with its finished tasks slimmed.

    ``needed`` are the tasks whose ``fields`` conditions still have to read;
    ``digests`` those whose output digest an unfinished memoized task's key needs;
    ``specs`` the tasks' specs, which tell whose Agents are derivable. A status
    whose tasks cannot add up to the budget is not measured.
    """
    if MOST_RUN_BYTES + MOST_TASK_BYTES * len(status.tasks) <= budget:
        return status
    if wire_size(status) <= budget:
        return status
    slim = _map_finished(status, partial(_without_references, specs or {}))
    if wire_size(slim) <= budget:
        return slim
    slim = _map_finished(slim, _without_digest, keep=digests)
    if wire_size(slim) <= budget:
        return slim
    slim = _map_finished(slim, _without_fields, keep=needed)
    if wire_size(slim) <= budget:
        return slim
    return _map_finished(slim, _without_preview)


def _map_finished(
    status: WorkflowStatus,
    slim: Callable[[str, TaskStatus], TaskStatus],
    keep: frozenset[str] = frozenset(),
) -> WorkflowStatus:
    tasks = {
        name: slim(name, task) if task.phase in FINISHED and name not in keep else task
        for name, task in status.tasks.items()
    }
    return status.model_copy(update={"tasks": tasks})


def _slim_cached(task: TaskStatus) -> dict[str, object]:
    """A task served from the cache keeps only its entry's name (its reason says the rest):
    no key, time, message, nor its usage of 0 tokens."""
    if task.cached is None:
        return {}
    return {"cached": CachedFrom(entry=task.cached.entry), "message": None, "usage": None}


def _without_digest(name: str, task: TaskStatus) -> TaskStatus:
    return task.model_copy(update={"digest": None})


def _without_fields(name: str, task: TaskStatus) -> TaskStatus:
    return task.model_copy(update={"fields": None})


def _without_references(specs: Mapping[str, TaskSpec], name: str, task: TaskStatus) -> TaskStatus:
    """Drop what can be derived or looked up: Job and ConfigMap names, model, timestamps,
    the Agents when every attempt ran on the task's own ``agent`` (else the last one kept)."""
    spec = specs.get(name)
    own = spec.agent if spec is not None else None
    agents = task.agents or []
    return task.model_copy(
        update={
            "agents": None if not agents or set(agents) == {own} else agents[-1:],
            "job": None,
            "output": None,
            "model": None,
            "started_at": None,
            "finished_at": None,
            "message": brief(task.message, SLIM_MESSAGE_CHARS) if task.message else None,
            **_slim_cached(task),
        }
    )


def _without_preview(name: str, task: TaskStatus) -> TaskStatus:
    return task.model_copy(update={"preview": None})
