"""Lean status values: capped messages, output previews, progress and token totals.

A Workflow may have 1000 tasks and its object must stay far below etcd's
~1.5 MB limit (Argo's users hit it; Tekton slimmed its status for it), so
every free-text value written to status goes through here and is capped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from troupe_operator.api import TaskPhase, TaskStatus, TokenUsage
from troupe_operator.api.workflow import PREVIEW_CHARS

MESSAGE_CHARS: Final = 300
PREVIEW_BUDGET_CHARS: Final = 64_000
"""All previews of one Workflow together; large Workflows get shorter previews."""


def brief(text: str, limit: int = MESSAGE_CHARS) -> str:
    """One line of at most ``limit`` characters, ending in an ellipsis when cut."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def preview_chars(task_count: int) -> int:
    """Preview length per task: PREVIEW_CHARS, less when many tasks share the budget."""
    return min(int(PREVIEW_CHARS), PREVIEW_BUDGET_CHARS // max(1, task_count))


def preview(text: str, limit: int) -> str | None:
    """The output's first characters, whitespace folded; None when nothing fits."""
    shown = brief(text, limit) if limit > 0 else ""
    return shown or None


def progress(tasks: Mapping[str, TaskStatus], total: int) -> str:
    succeeded = sum(1 for task in tasks.values() if task.phase == TaskPhase.SUCCEEDED)
    return f"{succeeded}/{total}"


def total_usage(tasks: Iterable[TaskStatus]) -> TokenUsage | None:
    usages = [task.usage for task in tasks if task.usage is not None]
    return sum(usages, TokenUsage()) if usages else None


def status_patch(previous: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON merge patch turning ``previous`` into ``new``: vanished keys become None."""
    patch: dict[str, Any] = {}
    for key in previous.keys() - new.keys():
        patch[key] = None
    for key, value in new.items():
        old = previous.get(key)
        if isinstance(value, Mapping) and isinstance(old, Mapping):
            nested = status_patch(old, value)
            if nested:
                patch[key] = nested
        elif value != old:
            patch[key] = value
    return patch
