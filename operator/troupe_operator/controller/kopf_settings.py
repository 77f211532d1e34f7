"""How the Workflow controller sets kopf up: timeouts, quiet logs, no diff-bases.

Troupe registers indexes and event handlers only, never change handlers, so
kopf's diff-base (a deep copy of each watched object, built on every event to
tell what changed since a change handler last ran) is never read: building it
for every Job and Workflow event was a large share of the operator's CPU.
``EventsOnlyDiffBase`` is kopf's own extension point for that storage, doing
nothing. This module refuses nothing else of kopf's defaults without a reason
written here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import kopf

from troupe_operator.controller.config import OperatorConfig

WATCH_SERVER_SECONDS = 300
"""How long the API server keeps one watch request open before the client renews it."""


class EventsOnlyDiffBase(kopf.DiffBaseStorage):
    """A diff-base for an operator without change handlers: nothing built, nothing kept."""

    def build(self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None) -> Any:
        return {}

    def fetch(self, *, body: kopf.Body) -> None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: Any) -> None:
        return None


def configure(settings: kopf.OperatorSettings, config: OperatorConfig) -> None:
    """kopf's settings for this controller."""
    settings.persistence.diffbase_storage = EventsOnlyDiffBase()
    settings.posting.level = logging.WARNING  # kopf's own Events: warnings and errors only
    settings.networking.request_timeout = config.api_timeout_seconds
    settings.networking.connect_timeout = config.api_timeout_seconds
    settings.watching.server_timeout = WATCH_SERVER_SECONDS
    settings.watching.client_timeout = WATCH_SERVER_SECONDS + 30
    # One "handler succeeded" line per watch event is noise at thousands of Jobs.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
