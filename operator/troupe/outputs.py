"""A run's output text, read from the ConfigMaps its task pods wrote.

Status holds only a reference to each output (``tasks.NAME.output``); the text is in an
output ConfigMap owned by the Workflow. A task's output is its own, or for a task that
expanded, its chosen unit's (``resultOf``: a supervisor's final turn, a judged winner) or
all its ``forEach`` instances' in order. Without a task named, the outputs of the run's
final tasks (those nothing depends on) are read. When a compacted status has dropped the
reference, the ConfigMap is found by its name, which derives from the Workflow's uid.

It refuses, with one line each: an unknown task (NotFound), and a task that has no output
because it has not succeeded (WrongPhase, naming its phase and why).
"""

from __future__ import annotations

import json
from typing import Final

from troupe.errors import NotFound, WrongPhase
from troupe.kube import Body, Kube, resource_path
from troupe.runs import final_tasks, metadata, name, spec_tasks, unit_statuses
from troupe_operator.api import OUTPUT_KEY, SPEC_KEY
from troupe_operator.api.workflow import instance_key
from troupe_operator.workflow.naming import WorkflowRef

SUCCEEDED: Final = "Succeeded"
SKIPPED: Final = "Skipped"


def _ref(workflow: Body) -> WorkflowRef:
    meta = metadata(workflow)
    return WorkflowRef(str(meta.get("namespace")), str(meta.get("name")), str(meta.get("uid")))


def run_tasks(kube: Kube, workflow: Body) -> list[Body]:
    """The run's task specs: the Workflow's own, else those recorded when the run started
    (a Workflow made from a template carries none)."""
    tasks = spec_tasks(workflow)
    if tasks:
        return tasks
    if not unit_statuses(workflow):
        raise WrongPhase(f"workflow {name(workflow)!r} has not started: it has no output yet")
    ref = _ref(workflow)
    path = resource_path("v1", "configmaps", ref.namespace, ref.spec_config_map())
    recorded = kube.get(path, f"the recorded spec of workflow {ref.name!r}")
    try:
        spec = json.loads((recorded.get("data") or {}).get(SPEC_KEY) or "{}")
    except ValueError:
        spec = {}
    return list(spec.get("tasks") or []) if isinstance(spec, dict) else []


def output_units(workflow: Body, task: str) -> list[str]:
    """The units whose outputs make ``task``'s output (a unit key names itself)."""
    statuses = unit_statuses(workflow)
    entry = statuses.get(task)
    if entry is None:
        known = ", ".join(sorted(statuses)) or "none yet"
        raise NotFound(f"workflow {name(workflow)!r} has no task {task!r} (tasks: {known})")
    if entry.get("phase") != SUCCEEDED:
        raise WrongPhase(_no_output(task, entry))
    if entry.get("resultOf"):
        return [str(entry["resultOf"])]
    items = entry.get("items")
    if isinstance(items, int):
        return [instance_key(task, index) for index in range(items)]
    return [task]


def _no_output(task: str, entry: Body) -> str:
    phase = entry.get("phase") or "Pending"
    why = entry.get("message") or entry.get("reason")
    return f"task {task!r} has no output: it is {phase}" + (f" ({why})" if why else "")


def read_output(kube: Kube, workflow: Body, unit: str) -> str:
    """The text one succeeded unit wrote."""
    entry = unit_statuses(workflow).get(unit) or {}
    if entry.get("phase") != SUCCEEDED:
        raise WrongPhase(_no_output(unit, entry))
    reference = entry.get("output") or {}
    cached = (entry.get("cached") or {}).get("entry")  # served from the cache (memoized)
    config_map = reference.get("configMap") or cached or _ref(workflow).output_config_map(unit)
    key = reference.get("key") or OUTPUT_KEY
    path = resource_path("v1", "configmaps", _ref(workflow).namespace, config_map)
    data = kube.get(path, f"the output ConfigMap {config_map!r} of task {unit!r}").get("data")
    text = (data or {}).get(key)
    if text is None:
        raise NotFound(f"the output ConfigMap {config_map!r} of task {unit!r} has no key {key!r}")
    return str(text)


def outputs(kube: Kube, workflow: Body, task: str | None = None) -> dict[str, str]:
    """Output text by unit key: of ``task``, or of every final task.

    Without ``task``, final tasks that were skipped are left out; WrongPhase when any other
    has no output (the run has not finished, or failed), naming each and its phase.
    """
    if task is not None:
        return {unit: read_output(kube, workflow, unit) for unit in output_units(workflow, task)}
    statuses = unit_statuses(workflow)
    finals = [
        final
        for final in final_tasks(run_tasks(kube, workflow))
        if (statuses.get(final) or {}).get("phase") != SKIPPED
    ]
    missing = [
        _no_output(final, statuses.get(final) or {})
        for final in finals
        if (statuses.get(final) or {}).get("phase") != SUCCEEDED
    ]
    if missing or not finals:
        raise WrongPhase("; ".join(missing) or f"workflow {name(workflow)!r} has no output")
    return {
        unit: read_output(kube, workflow, unit)
        for final in finals
        for unit in output_units(workflow, final)
    }
