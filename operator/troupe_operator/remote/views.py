"""What the cluster verbs print: a run as a tree of tasks, runs as a table, objects as data.

Plain text in aligned columns, as kubectl and argo print (greppable, stable under a pipe);
``-o json|yaml`` prints the objects as the server sent them, ``-o name`` their names. A
run's tasks are listed in spec order with the units of an expanded task (``NAME.INDEX``)
indented under it, each with its phase, attempts, duration, tokens and message (for a
ready task held back, what holds it and its priority). Views
read objects; they never call the API.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

import yaml

from troupe.kube import Body
from troupe.runs import (
    annotations_of,
    finished,
    metadata,
    name,
    phase,
    seconds_between,
    spec_tasks,
    status,
    task_order,
    total_tokens,
    unit_statuses,
    units_of,
)
from troupe_operator.api.run_control import is_suspended, stop_requested
from troupe_operator.workflow.timing import format_duration

SYMBOLS: Final = {
    "Succeeded": "✔",
    "Failed": "✖",
    "Error": "⚠",
    "Running": "●",
    "Retrying": "↻",
    "Pending": "◷",
    "Skipped": "○",
    "Cancelled": "⊘",
}
COLUMN_GAP: Final = "   "
TASK_COLUMNS: Final = ("TASK", "PHASE", "ATTEMPTS", "DURATION", "TOKENS", "DEPENDS", "MESSAGE")
LIST_COLUMNS: Final = ("NAME", "PHASE", "PROGRESS", "TOKENS", "AGE", "DURATION", "MESSAGE")


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns, the last one unpadded."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    lines = [
        COLUMN_GAP.join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1]])
        for row in [header, *rows]
    ]
    return "\n".join(line.rstrip() for line in lines)


def age(created: object, now: datetime) -> str:
    """kubectl's AGE: ``45s``, ``12m``, ``5h``, ``3d``."""
    seconds = seconds_between(created, now, now)
    if seconds is None:
        return "<unknown>"
    if seconds < 120:
        return f"{int(seconds)}s"
    if seconds < 2 * 3600:
        return f"{int(seconds // 60)}m"
    if seconds < 2 * 86400:
        return f"{int(seconds // 3600)}h"
    return f"{int(seconds // 86400)}d"


def _duration(entry: Body, now: datetime) -> str:
    seconds = seconds_between(entry.get("startedAt"), entry.get("finishedAt"), now)
    return "" if seconds is None else format_duration(seconds)


def _tokens(entry: Body) -> str:
    tokens = total_tokens(entry)
    return "" if tokens is None else str(tokens)


def _message(entry: Body) -> str:
    """Why an entry is as it is; for a ready task held back, what holds it and its priority."""
    waiting = entry.get("waiting")
    if isinstance(waiting, dict) and waiting.get("reason"):
        text = f"waits: {waiting['reason']} (priority {waiting.get('priority', 0)})"
    else:
        text = entry.get("message") or entry.get("reason") or ""
    return " ".join(str(text).split())


def _task_row(key: str, entry: Body, prefix: str, depends: str, now: datetime) -> list[str]:
    state = str(entry.get("phase") or "Pending")
    attempts = entry.get("attempts")
    return [
        f"{prefix}{SYMBOLS.get(state, '?')} {key}",
        state,
        str(attempts) if attempts else "",
        _duration(entry, now),
        _tokens(entry),
        depends,
        _message(entry),
    ]


def task_rows(workflow: Body, now: datetime) -> list[list[str]]:
    """One row per task, then its units indented under it (``├─``, ``└─``)."""
    statuses = unit_statuses(workflow)
    depends = {
        str(task.get("name")): ", ".join(task.get("dependsOn") or [])
        for task in spec_tasks(workflow)
    }
    rows = []
    for task in task_order(workflow):
        rows.append(_task_row(task, statuses.get(task) or {}, "", depends.get(task, ""), now))
        units = units_of(statuses, task)
        for index, unit in enumerate(units):
            branch = "└─" if index == len(units) - 1 else "├─"
            rows.append(_task_row(unit, statuses[unit], branch, "", now))
    return rows


def _usage_line(entry: Body) -> str:
    usage = entry.get("usage") or {}
    if not usage:
        return "0"
    return (
        f"{usage.get('totalTokens', 0)} "
        f"(input {usage.get('inputTokens', 0)}, output {usage.get('outputTokens', 0)})"
    )


def run_view(workflow: Body, now: datetime | None = None) -> str:
    """``troupe get``: the run's facts, then its tasks as a tree."""
    moment = now or datetime.now(UTC)
    meta, state = metadata(workflow), status(workflow)
    created = meta.get("creationTimestamp") or ""
    facts = [
        ("Name", name(workflow)),
        ("Namespace", str(meta.get("namespace") or "")),
        ("Phase", phase(workflow)),
        ("Message", _message(state)),
        ("Progress", str(state.get("progress") or "")),
        ("Created", f"{created} ({age(created, moment)} ago)"),
        ("Started", str(state.get("startedAt") or "")),
        ("Finished", str(state.get("finishedAt") or "")),
        ("Duration", _duration(state, moment)),
        ("Tokens", _usage_line(state)),
    ]
    template = ((workflow.get("spec") or {}).get("workflowTemplateRef") or {}).get("name")
    if template:
        facts.insert(2, ("Template", str(template)))
    requests = []
    if is_suspended(annotations_of(workflow)):
        requests.append("suspended")
    stop = stop_requested(annotations_of(workflow))
    if stop is not None:
        requests.append(f"stop requested ({stop})")
    if requests:
        facts.append(("Requests", "; ".join(requests)))
    lines = [f"{label + ':':<12}{value}".rstrip() for label, value in facts if value]
    rows = task_rows(workflow, moment)
    if rows:
        lines += ["", table(TASK_COLUMNS, rows)]
    return "\n".join(lines)


def list_view(workflows: Sequence[Body], all_namespaces: bool, now: datetime | None = None) -> str:
    """``troupe list``: one row per run."""
    moment = now or datetime.now(UTC)
    header = (("NAMESPACE",) if all_namespaces else ()) + LIST_COLUMNS
    rows = []
    for workflow in workflows:
        state = status(workflow)
        row = [
            name(workflow),
            phase(workflow),
            str(state.get("progress") or ""),
            _tokens(state),
            age(metadata(workflow).get("creationTimestamp"), moment),
            _duration(state, moment),
            _message(state) if phase(workflow) != "Succeeded" else "",
        ]
        rows.append(([str(metadata(workflow).get("namespace"))] if all_namespaces else []) + row)
    return table(header, rows)


def summary_line(workflow: Body, now: datetime | None = None) -> str:
    """How a run ended, in one line: ``launch-brief Succeeded (4/4 tasks, 12s, 1234 tokens)``."""
    state = status(workflow)
    parts = [
        f"{state.get('progress') or '?'} tasks",
        _duration(state, now or datetime.now(UTC)) or "0s",
        f"{total_tokens(state) or 0} tokens",
    ]
    line = f"{name(workflow)} {phase(workflow)} ({', '.join(parts)})"
    if phase(workflow) != "Succeeded" and _message(state):
        line += f": {_message(state)}"
    return line


def changes(before: Body | None, after: Body) -> list[str]:
    """What changed between two versions of a run, one line per run or unit phase change;
    the run's own line first, or last when it has just finished (after its last tasks)."""
    old = unit_statuses(before or {})
    units = []
    for key, entry in unit_statuses(after).items():
        state = entry.get("phase") or "Pending"
        if (old.get(key) or {}).get("phase") != state:
            detail = _message(entry)
            units.append(f"  {key} {state}" + (f": {detail}" if detail else ""))
    if before is not None and phase(before) == phase(after):
        return units
    run = f"{name(after)} {phase(after)}"
    return [*units, run] if finished(after) else [run, *units]


def as_data(objects: Sequence[Body], form: str, single: bool) -> str:
    """``-o name|json|yaml``: names one per line; one object, or a ``List`` of them."""
    if form == "name":
        return "\n".join(name(obj) for obj in objects)
    document: Any = (
        objects[0] if single else {"apiVersion": "v1", "kind": "List", "items": list(objects)}
    )
    if form == "json":
        return json.dumps(document, indent=2, ensure_ascii=False)
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True).rstrip("\n")
