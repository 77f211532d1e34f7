"""Where ``troupe run`` leaves its results: inside ``--output-dir``, and nowhere else.

The only paths it writes or deletes are ``DIR/<workflow>/<task>.md`` and
``DIR/<workflow>/status.json``. Each name below ``DIR`` must be one plain
path component (not empty, ``.`` or ``..``, no separator, so never absolute)
and the path must resolve inside ``DIR``: a Workflow called ``../x`` or
``/tmp/x``, or a symlink in ``DIR`` pointing elsewhere, is refused, not
followed. Validation refuses such names first; this is the writer's own
guard, checked again at every write. The directories are created and tried
before any task starts, so a file where a directory should be costs no
tokens. Nothing here decides what a task's output is: the runner says.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Final

from troupe_operator.api import WorkflowStatus

STATUS_FILE: Final = "status.json"
SEPARATORS: Final = frozenset(sep for sep in (os.sep, os.altsep, "\0") if sep)


class OutputPathError(Exception):
    """A path ``troupe run`` will not write: not a plain name, or resolving outside DIR."""


def confined(root: Path, *names: str) -> Path:
    """``root/names...``, or OutputPathError when that is anywhere but inside ``root``."""
    for name in names:
        if name in ("", ".", "..") or SEPARATORS.intersection(name):
            raise OutputPathError(f"{name!r} is not a plain file name")
    path = root.joinpath(*names)
    if not path.resolve().is_relative_to(root.resolve()):
        raise OutputPathError(f"{path} resolves to {path.resolve()}, outside {root}")
    return path


def prepare_output_dirs(root: Path, workflows: Iterable[str]) -> list[str]:
    """Create DIR and DIR/<workflow> for each Workflow and try writing there; the problems."""
    problem = _writable_dir(root)
    if problem:
        return [f"--output-dir {root}: {problem}"]
    problems = []
    for name in workflows:
        try:
            directory = confined(root, name)
        except OutputPathError as error:
            problems.append(f"Workflow '{name}': refused as an output directory: {error}")
            continue
        problem = _writable_dir(directory)
        if problem:
            problems.append(f"{directory}, the output directory of Workflow '{name}': {problem}")
    return problems


def _writable_dir(path: Path) -> str | None:
    if path.exists() and not path.is_dir():
        return "not a directory"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        return f"cannot create it: {error.strerror}"
    try:
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        return f"cannot write there: {error.strerror}"
    return None


def write_workflow(
    root: Path, workflow: str, outputs: Mapping[str, str | None], status: WorkflowStatus
) -> None:
    """``<task>.md`` for each task with output text (without: removed, stale), and the status."""
    confined(root, workflow).mkdir(parents=True, exist_ok=True)
    for task, text in outputs.items():
        path = confined(root, workflow, f"{task}.md")
        if text is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(text, encoding="utf-8")
    wire = json.dumps(status.to_wire(), indent=2) + "\n"
    confined(root, workflow, STATUS_FILE).write_text(wire, encoding="utf-8")
