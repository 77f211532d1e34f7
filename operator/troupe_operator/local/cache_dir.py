"""``troupe run``'s cache of memoized outputs: a directory of files, one per entry.

The same entries as the cluster's ConfigMaps, as files: ``DIR/<namespace>/<entry>.json``
holds the task's output file (its text and result) plus the key, digest, time and report,
so the same core serves the same keys. Namespaces never share a directory. Entries are
read once when the run starts and added as tasks write them (an entry that exists is
kept); a task reading a cached output reads a copy put in the run's outputs directory.
At start the entries older than ``RETENTION`` are deleted and, beyond ``MAX_ENTRIES``,
the oldest (``workflow.cache_gc``). A file that does not parse is left alone, never served.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from troupe_operator.api import CacheTarget, TaskReport
from troupe_operator.workflow import CacheEntry
from troupe_operator.workflow.cache_gc import to_collect

MAX_ENTRIES: Final = 200
"""Most entries kept per namespace, as the operator's default ``TROUPE_CACHE_MAX_ENTRIES``."""
RETENTION: Final = timedelta(days=7)


def default_directory() -> Path:
    """``$XDG_CACHE_HOME/troupe``, else ``~/.cache/troupe``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "troupe"


class LocalCache:
    """The entries of one directory, per namespace, by key hash."""

    def __init__(self, directory: Path, now: datetime) -> None:
        self.directory = directory
        self._entries: dict[str, dict[str, CacheEntry]] = {}
        self._now = now

    def entries(self, namespace: str) -> dict[str, CacheEntry]:
        if namespace not in self._entries:
            self._entries[namespace] = self._load(namespace)
        return self._entries[namespace]

    def _load(self, namespace: str) -> dict[str, CacheEntry]:
        found: dict[str, CacheEntry] = {}
        folder = self.directory / namespace
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                entry = CacheEntry(
                    path.stem,
                    datetime.fromisoformat(data["createdAt"]),
                    str(data["digest"]),
                    TaskReport.model_validate(data["report"]),
                )
                found[str(data["key"])] = entry
            except (OSError, ValueError, KeyError, TypeError):
                continue
        doomed = set(to_collect(found.values(), self._now, RETENTION, MAX_ENTRIES))
        for name in doomed:
            (folder / f"{name}.json").unlink(missing_ok=True)
        return {key: entry for key, entry in found.items() if entry.name not in doomed}

    def store(self, namespace: str, target: CacheTarget, output: Path, report: TaskReport) -> None:
        """Keep the output file a memoized task wrote under its key (an existing entry stays)."""
        path = self.directory / namespace / f"{target.name}.json"
        if path.exists() or report.digest is None:
            return
        written = json.loads(output.read_text(encoding="utf-8"))
        created = datetime.now(UTC).replace(microsecond=0)
        data = {
            **written,
            "key": target.key,
            "digest": report.digest,
            "createdAt": created.isoformat(),
            "report": report.to_wire(),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data), encoding="utf-8")
        entry = CacheEntry(target.name, created, report.digest, report)
        self.entries(namespace)[target.key] = entry

    def expose(self, namespace: str, name: str, outputs: Path) -> None:
        """Copy an entry where the run's task processes read outputs (``--outputs-dir``)."""
        copy = outputs / f"{name}.json"
        if not copy.exists():
            outputs.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.directory / namespace / f"{name}.json", copy)
