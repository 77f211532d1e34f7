"""Follow one object through the API's watch, across the breaks a long watch meets.

A watch ends when the server's ``timeoutSeconds`` run out, when a load balancer or the
network cuts it, or with ``410 Gone`` when the resourceVersion it resumes from has been
compacted away. Each of these is met here the way client-go's reflector meets it: resume
from the last version seen (bookmarks included), read the object anew after a 410 (or an
in-stream ``ERROR``), and back off between failed attempts. It gives up with
:class:`~troupe.errors.Unreachable` only when no attempt has succeeded for
``GIVE_UP_SECONDS``, and stops at the caller's deadline. It never yields the same
resourceVersion twice, and raises NotFound when the object is deleted.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any, Final

from troupe.errors import Expired, NotFound, Unreachable
from troupe.kube import Body, Kube

WINDOW_SECONDS: Final = 300
"""Longest single watch request (the server's ``timeoutSeconds``)."""
IDLE_SLACK_SECONDS: Final = 15.0
"""How long past its window a quiet stream is given before it is taken for dead."""
GIVE_UP_SECONDS: Final = 60.0
"""Without one successful request for this long, the API is called unreachable."""
BACKOFF_START_SECONDS: Final = 0.2
BACKOFF_MAX_SECONDS: Final = 5.0

Clock = Callable[[], float]


def _version(obj: Body) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


def follow(
    kube: Kube,
    collection: str,
    name: str,
    what: str,
    deadline: float | None = None,
    clock: Clock = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[Body]:
    """The object now, then each new version of it, until ``deadline`` (a ``clock`` time).

    ``collection`` is the path of its namespaced collection; NotFound when it does not
    exist or is deleted; Unreachable when the API has not answered for GIVE_UP_SECONDS.
    """
    current = kube.get(f"{collection}/{name}", what)
    yield current
    seen = version = _version(current)
    contact = clock()
    backoff = BACKOFF_START_SECONDS
    while deadline is None or clock() < deadline:
        window = WINDOW_SECONDS if deadline is None else min(WINDOW_SECONDS, deadline - clock())
        query = {
            "watch": "true",
            "fieldSelector": f"metadata.name={name}",
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(max(1, int(window))),
        }
        try:
            if version == "":
                current = kube.get(f"{collection}/{name}", what)
                contact, backoff = clock(), BACKOFF_START_SECONDS
                version = _version(current)
                if version != seen:
                    seen = version
                    yield current
                continue
            with kube.stream(collection, what, query, window + IDLE_SLACK_SECONDS) as lines:
                contact, backoff = clock(), BACKOFF_START_SECONDS
                for line in lines:
                    event = _event(line)
                    if event is None:
                        continue
                    kind, obj = event
                    if kind == "ERROR":
                        raise _error_event(obj, what)
                    version = _version(obj) or version
                    if kind == "DELETED":
                        raise NotFound(f"{what} was deleted")
                    if kind in ("ADDED", "MODIFIED") and version != seen:
                        seen = version
                        yield obj
        except Expired:
            version = ""  # read the object anew, then watch from its version
        except Unreachable:
            if clock() - contact > GIVE_UP_SECONDS:
                raise
            sleep(backoff)
            backoff = min(2 * backoff, BACKOFF_MAX_SECONDS)


def _event(line: bytes) -> tuple[str, Body] | None:
    try:
        event: Any = json.loads(line)
    except ValueError:
        return None
    if not isinstance(event, dict) or not isinstance(event.get("object"), dict):
        return None
    return str(event.get("type") or ""), event["object"]


def _error_event(status: Body, what: str) -> Expired | Unreachable:
    """An in-stream ERROR: 410 means read anew; anything else, try the watch again."""
    message = " ".join(str(status.get("message") or "").split())
    if status.get("code") == 410:
        return Expired(f"{what}: {message}")
    return Unreachable(f"the watch of {what} ended with an error: {message}")
