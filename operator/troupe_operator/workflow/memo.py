"""Memoized tasks: a unit's cache key, and the cached output it may be served from.

The key is made from what the operator already knows, never from task data: the Agent's
model (name, endpoint, temperature, max tokens), its role, system prompt and review
settings; the task's prompt template and output schema; the values of the inputs the
template reads (only those, so a change of another input changes no key of this task);
a forEach instance's position; what its report must carry (the fields conditions read,
the lists forEach expands over); and the sha256 digest of each upstream output, as the
upstream pods reported it. A change upstream therefore changes the keys downstream,
through the digests, without the operator ever reading an output.

Refused (never cached, always run): a task whose template reads an input from a Secret
(its value never reaches the operator, so no key can cover it), the units of a
``candidates`` or ``supervise`` task (their judge and turns read outputs the key cannot
name), and a unit whose upstream digest is unknown (a pod that left no report). This
module decides; it reads no clock and does no I/O: the entries it looks in are what the
shell observed (``Observation.cache``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from troupe_operator.api import (
    AgentSpec,
    Cache,
    CachedFrom,
    OutputRef,
    TaskPhase,
    TaskReport,
    TaskSpec,
    TaskStatus,
    TokenUsage,
    WorkflowSpec,
    counted_lists,
)
from troupe_operator.api.cache import CACHE_KEY_CHARS
from troupe_operator.expressions import fields_read
from troupe_operator.templates import references
from troupe_operator.workflow.summary import brief, preview
from troupe_operator.workflow.units import Unit

KEY_VERSION: Final = "troupe-memo/1"
"""Changes whenever what the key covers changes, so no old entry matches a new key."""
CACHED: Final = "Cached"
"""The reason of a task served from the cache."""
CACHE_HIT: Final = "TaskCached"
"""The Event of a task served from the cache."""
SKIPPED_DIGEST: Final = "skipped"
"""What a key says of an upstream task a condition skipped (it reads as empty text)."""


@dataclass(frozen=True)
class CacheEntry:
    """A cached output as the shell observed it: its name, age, digest and the report of
    the attempt that wrote it (preview, fields, counts, model, size; None if unreadable)."""

    name: str
    created_at: datetime
    digest: str
    report: TaskReport | None = None


def setting(spec: WorkflowSpec, task: TaskSpec) -> Cache | None:
    """The task's cache setting: its own, else the Workflow's; None when off."""
    chosen = task.cache or spec.cache
    return chosen if chosen is not None and chosen.enabled else None


def in_use(spec: WorkflowSpec) -> bool:
    """Whether any task of the run is memoized: only then does status keep output digests
    (64 characters a task, which a run without a cache has no use for)."""
    return any(setting(spec, task) is not None for task in spec.tasks)


def without_digests(tasks: Mapping[str, TaskStatus]) -> dict[str, TaskStatus]:
    return {
        name: task.model_copy(update={"digest": None}) if task.digest else task
        for name, task in tasks.items()
    }


def upstream_digest(task: TaskStatus, items: list[TaskStatus] | None) -> str | list[str] | None:
    """What a key says of one upstream task: its output's digest, its instances' in order, or
    ``SKIPPED_DIGEST``; None when one is unknown."""
    if task.phase == TaskPhase.SKIPPED:
        return SKIPPED_DIGEST
    if items is None:
        return task.digest
    digests = [item.digest for item in items]
    return None if any(d is None for d in digests) else [d for d in digests if d is not None]


def cache_key(
    spec: WorkflowSpec,
    unit: Unit,
    agent: AgentSpec,
    upstream: Mapping[str, str | list[str] | None],
) -> str | None:
    """The hash of ``unit``'s cache key on ``agent``; None when the unit cannot be cached.

    ``upstream`` holds :func:`upstream_digest` of every task the unit reads.
    """
    task = unit.spec
    if task.candidates is not None or task.supervise is not None:
        return None
    if unit.key != task.name and unit.item is None:
        return None
    if any(digest is None for digest in upstream.values()):
        return None
    read = references(task.prompt).inputs
    secret = {source.name for source in spec.inputs_from}
    if read & secret:
        return None
    conditions = [other.when for other in spec.tasks if other.when]
    ingredients = {
        "version": KEY_VERSION,
        "model": {
            "name": agent.model.name,
            "baseURL": agent.model.base_url,
            "temperature": agent.effective_temperature,
            "maxTokens": agent.effective_max_tokens,
        },
        "role": agent.role.value,
        "systemPrompt": agent.effective_system_prompt,
        "selfReview": [agent.effective_self_review, agent.max_review_rounds],
        "skills": sorted(agent.skills),
        "prompt": task.prompt,
        "outputSchema": task.output_schema,
        "inputs": {name: spec.inputs.get(name) for name in sorted(read)},
        "item": unit.item.index if unit.item is not None else None,
        "fields": sorted(fields_read(conditions, task.name)),
        "counts": sorted(counted_lists(spec, task.name)),
        "upstream": dict(sorted(upstream.items())),
    }
    canonical = json.dumps(ingredients, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:CACHE_KEY_CHARS]


def usable(entry: CacheEntry | None, cache: Cache, now: datetime) -> CacheEntry | None:
    """The entry if it is young enough for ``cache.maxAge``."""
    if entry is None or now - entry.created_at > timedelta(seconds=cache.max_age_seconds):
        return None
    return entry


def served(
    previous: TaskStatus, key: str, entry: CacheEntry, now: datetime, preview_chars: int
) -> TaskStatus:
    """A unit succeeded from a cache entry: no attempt, no Job, 0 tokens."""
    report = entry.report
    result = report.result if report is not None else None
    age = now - entry.created_at
    return previous.model_copy(
        update={
            "phase": TaskPhase.SUCCEEDED,
            "reason": CACHED,
            "job": None,
            "started_at": previous.started_at or now,
            "finished_at": now,
            "message": f"served from the cache, written {_age(age)} ago (0 tokens)",
            "model": brief(result.model, 100) if result is not None else None,
            "output": OutputRef(config_map=entry.name, bytes=result.bytes if result else None),
            "preview": preview(report.preview or "", preview_chars) if report else None,
            "fields": report.fields if report is not None else None,
            "counts": report.counts if report is not None else None,
            "usage": previous.usage or TokenUsage(),
            "digest": entry.digest,
            "cached": CachedFrom(entry=entry.name, key=key, created_at=entry.created_at),
            "waiting": None,
        }
    )


def output_of(workflow_output: str, task: TaskStatus) -> str:
    """The ConfigMap holding a succeeded unit's output: its cache entry, else its own."""
    return task.cached.entry if task.cached is not None else workflow_output


def _age(age: timedelta) -> str:
    seconds = int(age.total_seconds())
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"
