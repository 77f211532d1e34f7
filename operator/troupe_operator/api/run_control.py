"""Requests to a running Workflow: stop, suspend, resume and retry, as annotations.

A Workflow's spec is frozen once its run starts (later changes are refused), so what a
person asks of a run goes in annotations, which change no generation: the operator
honours them and status says what became of them. Writing them needs ``patch`` on
``workflows``, so RBAC decides who may stop or retry a run. The CLI and the operator
both take the names and the patches from here, so they cannot drift. This module only
names and builds requests; what each does is the reconcile core's
(``troupe_operator.workflow.run_control``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

STOP_ANNOTATION: Final = "troupe.dev/stop"
"""Stop the run: delete its running Jobs, start nothing more, end it Failed, reason Stopped.
The value is a message saying why (it goes into the Workflow's message)."""

SUSPEND_ANNOTATION: Final = "troupe.dev/suspend"
"""While ``"true"``, nothing new starts; running tasks finish. Removing it resumes the run."""

RETRY_ANNOTATION: Final = "troupe.dev/retry"
"""Retry a Failed run in place once per distinct value (a nonce): its failed, cancelled and
skipped tasks run again; succeeded tasks keep their outputs."""

MAX_STOP_MESSAGE: Final = 256
"""Longest stop message kept (the rest is cut with an ellipsis)."""
MAX_RETRY_NONCE: Final = 128
"""Longest retry nonce kept: status records the last one answered."""


@dataclass(frozen=True)
class RunRequests:
    """What the annotations of one Workflow ask of its run."""

    stop: str | None = None
    suspended: bool = False
    retry: str | None = None

    @classmethod
    def of(cls, annotations: Mapping[str, str] | None) -> RunRequests:
        found = annotations or {}
        stop = found.get(STOP_ANNOTATION)
        retry = found.get(RETRY_ANNOTATION)
        return cls(
            stop=None if stop is None else _cut(stop.strip() or "stopped", MAX_STOP_MESSAGE),
            suspended=found.get(SUSPEND_ANNOTATION, "").strip().lower() == "true",
            retry=None if not retry else _cut(retry, MAX_RETRY_NONCE),
        )


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _annotations(values: dict[str, str | None]) -> dict[str, Any]:
    return {"metadata": {"annotations": values}}


def stop_patch(message: str) -> dict[str, Any]:
    """The merge patch asking a run to stop, saying why."""
    return _annotations({STOP_ANNOTATION: message or "stopped"})


def suspend_patch() -> dict[str, Any]:
    return _annotations({SUSPEND_ANNOTATION: "true"})


def resume_patch() -> dict[str, Any]:
    return _annotations({SUSPEND_ANNOTATION: None})


def retry_patch(nonce: str) -> dict[str, Any]:
    """The merge patch asking a Failed run to retry; it lifts a stop in the same write."""
    return _annotations({RETRY_ANNOTATION: nonce, STOP_ANNOTATION: None})
