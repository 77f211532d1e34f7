"""Run control: how a person asks a running Workflow to stop, pause, resume or retry.

Requests are annotations on the Workflow, written with a JSON merge patch: Kubernetes RBAC
already guards ``patch`` on workflows, they survive an operator restart, and writing one
never touches spec or status. ``troupe stop``, ``suspend``, ``resume`` and ``retry`` (and
``kubectl annotate``) write them; the operator reads them. Both import this module, so the
names and the shape of each patch cannot drift apart:

- stop: ``troupe.dev/stop: "<why>"``; the run ends ``Failed`` with reason ``Stopped``;
- suspend: ``troupe.dev/suspend: "true"``; resume removes it (``null`` in a merge patch);
- retry: ``troupe.dev/retry: "<nonce>"`` set to a fresh value, with ``troupe.dev/stop``
  removed in the same patch, so a stopped run can be retried in one write; the operator
  acts once per nonce it has not seen.

It builds patches and reads annotations; it refuses nothing about phases (whether a run may
be stopped or retried is the client's check and the operator's decision: the reconcile core,
``troupe_operator.workflow.run_control``) and does no I/O.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

STOP_ANNOTATION: Final = "troupe.dev/stop"
"""Set: stop the run; its value says why (it ends up in the run's message)."""
SUSPEND_ANNOTATION: Final = "troupe.dev/suspend"
"""``"true"``: start nothing new until it is removed; running tasks finish."""
RETRY_ANNOTATION: Final = "troupe.dev/retry"
"""A new value asks a Failed run to run its Failed, Cancelled and Skipped tasks again."""

SUSPENDED: Final = "true"
DEFAULT_STOP_MESSAGE: Final = "stopped by request"
MAX_STOP_MESSAGE_CHARS: Final = 1024
"""Longest stop message: it is carried into the run's status message and its Event."""
MAX_RETRY_NONCE_CHARS: Final = 128
"""Longest retry nonce the operator keeps: status records the last one it answered."""

Patch = dict[str, Any]


def _annotations(values: Mapping[str, str | None]) -> Patch:
    return {"metadata": {"annotations": dict(values)}}


def stop_patch(message: str = DEFAULT_STOP_MESSAGE) -> Patch:
    """Ask the run to stop, saying why in one line; ValueError for an unusable message."""
    line = " ".join(message.split())
    if not line:
        raise ValueError("the stop message is empty")
    if len(line) > MAX_STOP_MESSAGE_CHARS:
        raise ValueError(
            f"the stop message has {len(line)} characters; at most {MAX_STOP_MESSAGE_CHARS}"
        )
    return _annotations({STOP_ANNOTATION: line})


def suspend_patch() -> Patch:
    return _annotations({SUSPEND_ANNOTATION: SUSPENDED})


def resume_patch() -> Patch:
    return _annotations({SUSPEND_ANNOTATION: None})


def retry_patch(nonce: str) -> Patch:
    """Ask for one more retry of a Failed (or stopped) run: a new nonce, the stop withdrawn."""
    return _annotations({RETRY_ANNOTATION: nonce, STOP_ANNOTATION: None})


def new_retry_nonce(now: datetime) -> str:
    """A value no earlier request had: the time (RFC 3339, UTC) and 32 random bits."""
    return f"{now.strftime('%Y-%m-%dT%H:%M:%SZ')}-{secrets.token_hex(4)}"


def is_suspended(annotations: Mapping[str, str] | None) -> bool:
    return (annotations or {}).get(SUSPEND_ANNOTATION) == SUSPENDED


def stop_requested(annotations: Mapping[str, str] | None) -> str | None:
    """Why the run was asked to stop, or None when it was not."""
    return (annotations or {}).get(STOP_ANNOTATION)


@dataclass(frozen=True)
class RunRequests:
    """What the annotations of one Workflow ask of its run, as the operator reads them."""

    stop: str | None = None
    suspended: bool = False
    retry: str | None = None

    @classmethod
    def of(cls, annotations: Mapping[str, str] | None) -> RunRequests:
        stop = stop_requested(annotations)
        retry = (annotations or {}).get(RETRY_ANNOTATION)
        return cls(
            stop=None if stop is None else _line(stop, MAX_STOP_MESSAGE_CHARS),
            suspended=is_suspended(annotations),
            retry=_line(retry, MAX_RETRY_NONCE_CHARS) if retry else None,
        )


def _line(text: str, limit: int) -> str:
    """One line of at most ``limit`` characters (a blank stop message: the default)."""
    line = " ".join(text.split()) or DEFAULT_STOP_MESSAGE
    return line if len(line) <= limit else line[: limit - 1] + "…"
