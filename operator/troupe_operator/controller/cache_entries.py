"""The shell of memoized tasks: the namespace's cache entries as kopf indexes them, and their
collection.

A cache entry is a ConfigMap labelled ``troupe.dev/cache-key`` that a memoized task's pod
created (``troupe_agent.output_configmap``). kopf watches those (by label) and keeps, per
namespace, each entry's key, name, time, output digest and the report it was written with,
never its data; the reconciler hands a run the entries of its own namespace only, so an
output is never served across namespaces. An entry whose metadata does not parse is
left out: never served, nor collected (it may not be Troupe's). Every
``cache_gc_seconds`` the collector deletes, per namespace, the entries older than
``cache_retention_seconds`` and, beyond ``cache_max_entries``, the oldest
(``troupe_operator.workflow.cache_gc``), each delete
bounded by the API timeout; a failure is logged and retried at the next round.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import kopf

from troupe_operator.api import (
    CACHE_CREATED_ANNOTATION,
    CACHE_DIGEST_ANNOTATION,
    CACHE_KEY_LABEL,
    REPORT_ANNOTATION,
    TaskReport,
)
from troupe_operator.controller.config import OperatorConfig
from troupe_operator.controller.kube import ApiError, Kube
from troupe_operator.controller.observe import timestamp
from troupe_operator.workflow import CacheEntry
from troupe_operator.workflow.cache_gc import to_collect

logger = logging.getLogger(__name__)

CACHE_INDEX: Final = "cache_entries"
"""kopf index: namespace to ``(key hash, CacheEntry)`` of each cache entry there."""

Index = kopf.Index[str, tuple[str, CacheEntry]]


def entry_of(body: Mapping[str, Any]) -> tuple[str, CacheEntry] | None:
    """A cache entry's key and what the core needs of it; None when its metadata is unusable."""
    metadata = body.get("metadata") or {}
    key = (metadata.get("labels") or {}).get(CACHE_KEY_LABEL)
    annotations = metadata.get("annotations") or {}
    created = timestamp(annotations.get(CACHE_CREATED_ANNOTATION))
    digest = annotations.get(CACHE_DIGEST_ANNOTATION)
    if not key or created is None or not isinstance(digest, str):
        return None
    report = TaskReport.decode(str(annotations.get(REPORT_ANNOTATION) or ""))
    return str(key), CacheEntry(str(metadata.get("name")), created, digest, report)


def register_index(registry: kopf.OperatorRegistry) -> None:
    @kopf.index(
        "",
        "v1",
        "configmaps",
        id=CACHE_INDEX,
        labels={CACHE_KEY_LABEL: kopf.PRESENT},
        registry=registry,
    )
    async def index_entry(body: kopf.Body, namespace: str | None, **_: Any) -> Any:
        found = entry_of(body)
        return {} if found is None else {namespace: found}


def entries_in(index: Index, namespace: str) -> dict[str, CacheEntry]:
    """The namespace's usable entries by key hash (the newest, if two share a key)."""
    found: dict[str, CacheEntry] = {}
    for key, entry in index.get(namespace, ()):
        if key not in found or entry.created_at > found[key].created_at:
            found[key] = entry
    return found


async def collect(kube: Kube, index: Index, config: OperatorConfig, now: datetime) -> int:
    """Delete what the rules name in every namespace; how many were deleted."""
    retention = timedelta(seconds=config.cache_retention_seconds)
    deleted = 0
    for namespace in list(index):
        entries = [entry for _, entry in index.get(namespace, ())]
        for name in to_collect(entries, now, retention, config.cache_max_entries):
            try:
                await kube.delete_config_map(namespace, name)
            except ApiError as error:
                logger.warning("cache entry %s/%s not collected: %s", namespace, name, error)
                continue
            deleted += 1
    return deleted


async def collector(kube: Kube, index: Index, config: OperatorConfig) -> None:
    """Collect every ``cache_gc_seconds`` until cancelled; a round that fails is logged and the
    next one tries again (the loop never ends on an error)."""
    while True:
        try:
            deleted = await collect(kube, index, config, datetime.now(UTC))
        except Exception:
            logger.exception("collecting cache entries failed; trying again in the next round")
        else:
            if deleted:
                logger.info("collected %d cache entries", deleted)
        await asyncio.sleep(config.cache_gc_seconds)
