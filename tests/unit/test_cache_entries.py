"""The shells of memoized tasks: entries read from ConfigMaps and files, and the Role grant."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from troupe_operator.api import (
    CACHE_CREATED_ANNOTATION,
    CACHE_DIGEST_ANNOTATION,
    CACHE_KEY_LABEL,
    REPORT_ANNOTATION,
    CacheTarget,
    TaskReport,
)
from troupe_operator.controller.cache_entries import collect, entry_of
from troupe_operator.controller.children import with_cache_reads
from troupe_operator.controller.config import OperatorConfig
from troupe_operator.controller.kube import ApiError
from troupe_operator.local.cache_dir import MAX_ENTRIES, LocalCache
from troupe_operator.workflow import CacheEntry

NOW = datetime(2026, 1, 10, tzinfo=UTC)
DIGEST = "a" * 64
REPORT = TaskReport(succeeded=True, preview="hello", digest=DIGEST)


def config_map(**annotations: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "troupe-cache-k1",
            "labels": {CACHE_KEY_LABEL: "k1"},
            "annotations": {
                CACHE_DIGEST_ANNOTATION: DIGEST,
                CACHE_CREATED_ANNOTATION: "2026-01-09T10:00:00+00:00",
                REPORT_ANNOTATION: REPORT.encode(),
                **annotations,
            },
        }
    }


def test_an_entry_is_read_from_its_metadata_only() -> None:
    found = entry_of(config_map())
    assert found is not None
    key, entry = found
    assert (key, entry.name, entry.digest) == ("k1", "troupe-cache-k1", DIGEST)
    assert entry.created_at == datetime(2026, 1, 9, 10, tzinfo=UTC)
    assert entry.report == REPORT


@pytest.mark.parametrize("broken", [CACHE_CREATED_ANNOTATION, CACHE_DIGEST_ANNOTATION])
def test_an_entry_without_its_time_or_digest_is_never_served(broken: str) -> None:
    body = config_map()
    del body["metadata"]["annotations"][broken]
    assert entry_of(body) is None


RUN_ROLE = {
    "metadata": {"name": "wf-task", "resourceVersion": "7"},
    "rules": [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": ["wf-a-out"],
            "verbs": ["get", "update", "patch"],
        },
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]},
    ],
}


def test_the_grant_adds_get_on_exactly_the_entries_once() -> None:
    granted = with_cache_reads(RUN_ROLE, ["troupe-cache-b", "troupe-cache-a"])
    assert granted is not None and granted["metadata"]["resourceVersion"] == "7"
    assert granted["rules"][:2] == RUN_ROLE["rules"]
    assert granted["rules"][2] == {
        "apiGroups": [""],
        "resources": ["configmaps"],
        "resourceNames": ["troupe-cache-a", "troupe-cache-b"],
        "verbs": ["get"],
    }
    assert with_cache_reads(granted, ["troupe-cache-a"]) is None, "nothing to add"
    more = with_cache_reads(granted, ["troupe-cache-c"])
    assert more is not None and len(more["rules"]) == 3
    assert more["rules"][2]["resourceNames"] == [
        "troupe-cache-a",
        "troupe-cache-b",
        "troupe-cache-c",
    ]


def write_entry(folder: Path, name: str, key: str, created: datetime) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    data = {
        "output": name,
        "key": key,
        "digest": DIGEST,
        "createdAt": created.isoformat(),
        "report": REPORT.to_wire(),
    }
    (folder / f"{name}.json").write_text(json.dumps(data))


def test_a_cache_directory_is_per_namespace_and_collected_when_read(tmp_path: Path) -> None:
    for age in range(MAX_ENTRIES + 2):
        write_entry(
            tmp_path / "team", f"troupe-cache-{age}", f"k{age}", NOW - timedelta(minutes=age)
        )
    write_entry(tmp_path / "team", "troupe-cache-old", "kold", NOW - timedelta(days=8))
    (tmp_path / "team" / "troupe-cache-junk.json").write_text("not json")
    cache = LocalCache(tmp_path, NOW)
    assert cache.entries("other") == {}
    entries = cache.entries("team")
    assert len(entries) == MAX_ENTRIES and "kold" not in entries and "k201" not in entries
    assert not (tmp_path / "team" / "troupe-cache-old.json").exists()
    assert (tmp_path / "team" / "troupe-cache-junk.json").exists(), "not ours: left alone"


def test_a_stored_entry_is_kept_and_exposed_to_the_run(tmp_path: Path) -> None:
    output = tmp_path / "out.json"
    output.write_text(json.dumps({"output": "text", "model": "m"}))
    cache = LocalCache(tmp_path / "cache", NOW)
    target = CacheTarget(name="troupe-cache-k", key="k")
    cache.store("team", target, output, REPORT)
    output.write_text(json.dumps({"output": "other"}))
    cache.store("team", target, output, REPORT)  # an existing entry stays
    assert cache.entries("team")["k"].name == "troupe-cache-k"
    cache.expose("team", "troupe-cache-k", tmp_path / "outputs")
    copied = json.loads((tmp_path / "outputs" / "troupe-cache-k.json").read_text())
    assert copied["output"] == "text" and copied["key"] == "k"


class Deleting:
    """Kube's delete of ConfigMaps, recorded; one name answers with an API error."""

    def __init__(self, failing: str = "") -> None:
        self.deleted: list[tuple[str, str]] = []
        self.failing = failing

    async def delete_config_map(self, namespace: str, name: str) -> None:
        if name == self.failing:
            raise ApiError(500, "InternalError", "try later")
        self.deleted.append((namespace, name))


async def test_the_collector_deletes_per_namespace_by_the_rule_and_goes_on_after_a_failure() -> (
    None
):
    def entries(*ages_in_days: float) -> list[tuple[str, CacheEntry]]:
        return [
            (f"k{age}", CacheEntry(f"troupe-cache-{age}", NOW - timedelta(days=age), DIGEST))
            for age in ages_in_days
        ]

    index = {"a": entries(8, 9, 1), "b": entries(1, 2, 3)}
    kube = Deleting(failing="troupe-cache-9")
    config = OperatorConfig(cache_max_entries=2, cache_retention_seconds=7 * 86_400)
    deleted = await collect(kube, index, config, NOW)  # type: ignore[arg-type]
    assert deleted == 2
    assert kube.deleted == [("a", "troupe-cache-8"), ("b", "troupe-cache-3")]
