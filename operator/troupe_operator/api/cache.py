"""The shapes of memoized tasks: the ``cache`` setting, and where a task's output came from.

A Workflow (for every task) or a task (overriding it) opts in with ``cache: {maxAge}``;
a task may opt out with ``cache: {enabled: false}``. A cached output is an ordinary
ConfigMap of the run's namespace (``CACHE_ENTRY_PREFIX`` and the key's hash), written by
the task pod that produced it and labelled with the key (``CACHE_KEY_LABEL``); it is
never read across namespaces. How the key is made and when a task is served from the
cache is the reconcile core's (``troupe_operator.workflow.memo``); this module only says
what is written and refuses what cannot be honoured (an age beyond ``MAX_CACHE_AGE``).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Final

from pydantic import Field, field_validator

from troupe_operator.api.common import ApiModel

MAX_CACHE_AGE_SECONDS: Final = 30 * 86_400
"""Oldest output a task may be served from: 30 days (``cache.maxAge``)."""
MAX_CACHE_AGE: Final = "30d"
CACHE_KEY_LABEL: Final = "troupe.dev/cache-key"
"""Label of a cache entry: the hash of its key (``CACHE_KEY_CHARS`` hex characters)."""
CACHE_DIGEST_ANNOTATION: Final = "troupe.dev/output-digest"
"""Annotation of a cache entry: sha256 of its output text, hex."""
CACHE_CREATED_ANNOTATION: Final = "troupe.dev/cached-at"
"""Annotation of a cache entry: when its output was written (RFC 3339)."""
CACHE_MODEL_ANNOTATION: Final = "troupe.dev/model"
"""Annotation of a cache entry: the model that wrote it (for people; the key holds it)."""
CACHE_ENTRY_PREFIX: Final = "troupe-cache-"
CACHE_KEY_CHARS: Final = 40
"""Hex characters of a key's hash kept in names and labels (160 bits; a label holds 63)."""
DIGEST_PATTERN: Final = r"^[0-9a-f]{64}$"

_DURATION = re.compile(r"^([0-9]{1,15})(s|m|h|d)$")
MAX_AGE_PATTERN: Final = (
    r"^0*([0-9]{1,6}|1[0-9]{6}|2[0-4][0-9]{5}|25[0-8][0-9]{4}|259[01][0-9]{3}|2592000)s$"
    r"|^0*([0-9]{1,4}|[1-3][0-9]{4}|4[0-2][0-9]{3}|43[01][0-9]{2}|43200)m$"
    r"|^0*([0-9]{1,2}|[1-6][0-9]{2}|7[01][0-9]|720)h$"
    r"|^0*([0-9]|[12][0-9]|30)d$"
)
"""A duration of at most ``MAX_CACHE_AGE`` in one unit: the CRD's schema refuses a longer one
as the model does (one verdict), without a rule language."""
_UNIT_SECONDS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def duration_seconds(text: str) -> int:
    """Seconds of a duration such as ``90s``, ``30m``, ``24h`` or ``7d`` (one number, one unit)."""
    found = _DURATION.match(text)
    if found is None:
        raise ValueError(f"'{text}' is not a duration like 90s, 30m, 24h or 7d")
    return int(found.group(1)) * _UNIT_SECONDS[found.group(2)]


def entry_name(key: str) -> str:
    """The ConfigMap (or, under ``troupe run``, the file) holding the output cached under
    ``key`` (a key hash of ``CACHE_KEY_CHARS`` characters)."""
    return f"{CACHE_ENTRY_PREFIX}{key}"


class Cache(ApiModel):
    """Serve a task from an earlier output of the same key in this namespace, if young enough."""

    max_age: str = Field(
        default="24h",
        max_length=16,
        pattern=MAX_AGE_PATTERN,
        description=(
            "Oldest cached output to use, as a number and a unit (s, m, h, d), at most 30d; "
            "default 24h."
        ),
    )
    enabled: bool = Field(
        default=True,
        description="false: never serve this task from the cache, nor cache its output.",
    )

    @field_validator("max_age", mode="before")
    @classmethod
    def _bounded(cls, value: object) -> object:
        """Said before the pattern is checked, so that the message names the limit."""
        if isinstance(value, str) and duration_seconds(value) > MAX_CACHE_AGE_SECONDS:
            raise ValueError(f"maxAge {value} is beyond the limit of {MAX_CACHE_AGE}")
        return value

    @property
    def max_age_seconds(self) -> int:
        return duration_seconds(self.max_age)


class CachedFrom(ApiModel):
    """Where a task served from the cache took its output."""

    entry: str = Field(description="The cache entry's ConfigMap, in the run's namespace.")
    key: str | None = Field(
        default=None,
        max_length=64,
        description="The hash of the task's cache key (dropped when a big status is slimmed).",
    )
    created_at: datetime | None = Field(
        default=None,
        description="When the cached output was written (dropped when a big status is slimmed).",
    )


class CacheTarget(ApiModel):
    """Where a task pod caches the output it wrote (a ConfigMap it creates, kept if it exists)."""

    name: str = Field(description="The cache entry's ConfigMap (troupe-cache-<key hash>).")
    key: str = Field(max_length=64, description="The hash of the task's cache key (its label).")
