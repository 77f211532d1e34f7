"""Task outputs as local JSON files: what ``--output-file`` writes and ``--outputs-dir`` reads.

``troupe run`` (the local runner) has no cluster: each task writes its output
to a file instead of a ConfigMap, as one JSON object holding the
``TaskResult`` wire fields plus ``"output"`` (the text), and a later task reads
its upstream outputs from ``DIR/<output ConfigMap name>.json``. One module
owns both sides so the format cannot drift. A missing or unreadable upstream
file is permanent; this module refuses to guess an output from anything else.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Final

from troupe_agent.failures import TaskFailed
from troupe_operator.api import EXIT_PERMANENT, TaskResult

TEXT_FIELD: Final = "output"


def write_output_file(path: Path, text: str, result: TaskResult) -> None:
    try:
        path.write_text(json.dumps({**result.to_wire(), TEXT_FIELD: text}), encoding="utf-8")
    except OSError as exc:
        raise TaskFailed(
            f"cannot write output file {path}: {exc.strerror}", EXIT_PERMANENT
        ) from exc


class OutputFiles:
    """Upstream outputs from the files ``--output-file`` wrote, named after their ConfigMaps."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory

    def read(self, task: str, config_map: str) -> str:
        path = self._directory / f"{config_map}.json"
        where = f"upstream task '{task}' (file {path})"
        try:
            written = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise TaskFailed(f"the output of {where} is gone", EXIT_PERMANENT) from exc
        except OSError as exc:
            raise TaskFailed(
                f"cannot read the output of {where}: {exc.strerror}", EXIT_PERMANENT
            ) from exc
        except ValueError as exc:
            raise TaskFailed(f"the output of {where} is not JSON: {exc}", EXIT_PERMANENT) from exc
        text = written.get(TEXT_FIELD) if isinstance(written, dict) else None
        if not isinstance(text, str):
            raise TaskFailed(f"the output of {where} has no '{TEXT_FIELD}' text", EXIT_PERMANENT)
        return text
