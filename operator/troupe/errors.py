"""What can go wrong talking to a cluster about Workflows, each kind its own class.

Every error carries one line for a person (the server's own words where it sent some) and
nothing else: callers print ``str(error)``, never a traceback. A program tells the kinds
apart by class; the ``troupe`` command maps each to its exit code (``docs/cli.md``). Kinds
are what a caller can act on, not HTTP statuses: a 401 and a 403 are both "not allowed",
a 5xx, a 429 and a request without an answer are all "the API cannot be used right now".
"""

from __future__ import annotations

import json
from typing import Any


class TroupeError(Exception):
    """A request the client could not carry out; ``str()`` is one line saying why."""


class InvalidRequest(TroupeError):
    """The input cannot work: a bad argument, an unusable kubeconfig, a refused object (422)."""


class NotFound(TroupeError):
    """The Workflow (task, template, output) does not exist, or Troupe is not installed."""


class Forbidden(TroupeError):
    """The API server refused the credentials (401) or the permission (403)."""


class WrongPhase(TroupeError):
    """The run is in a phase the request does not apply to (retry a run that did not fail)."""


class WaitTimeout(TroupeError):
    """The run did not finish within the time given."""


class Unreachable(TroupeError):
    """No usable answer from the API: no connection, no reply in time, 429 or 5xx."""


class AlreadyExists(TroupeError):
    """An object of that name exists already (409 AlreadyExists)."""


class Conflict(TroupeError):
    """The object kept changing under a conditional write (409 Conflict); try again."""


class Expired(TroupeError):
    """A watch asked for a resourceVersion the server no longer keeps (410 Gone): read anew."""


def server_message(body: str | bytes | None) -> tuple[str, str]:
    """The ``reason`` and ``message`` of the ``Status`` body a server answered with."""
    try:
        status: Any = json.loads(body or "{}")
    except (ValueError, TypeError):
        status = {}
    if not isinstance(status, dict):
        return "", ""
    return str(status.get("reason") or ""), " ".join(str(status.get("message") or "").split())


def from_status(status: int, body: str | bytes | None, what: str) -> TroupeError:
    """The error for an HTTP answer about ``what`` (``workflow "a" in namespace "b"``)."""
    reason, message = server_message(body)
    if status == 404:
        if reason == "NotFound" and message and "could not find the requested resource" in message:
            return NotFound(f"{message}: is Troupe installed on this cluster? ({what})")
        return NotFound(f"{what} not found")
    if status in (401, 403):
        return Forbidden(message or f"{what}: {'unauthorized' if status == 401 else 'forbidden'}")
    if status == 409 and reason == "AlreadyExists":
        return AlreadyExists(message or f"{what} already exists")
    if status == 409:
        return Conflict(message or f"{what} changed meanwhile")
    if status == 410:
        return Expired(message or f"{what}: the version asked for is too old")
    if status in (400, 422):
        return InvalidRequest(message or f"{what}: the API server refused the request ({status})")
    if status == 429 or status >= 500:
        detail = message or reason or "no message"
        return Unreachable(f"the API server answered {status} for {what}: {detail}")
    return TroupeError(f"the API server answered {status} for {what}: {message or reason}")
