"""`Warning` response headers, recorded and capped as kube-apiserver's warning filter does.

The API server answers some requests with warnings instead of refusals, e.g. an unknown
field under fieldValidation `Warn` (the default): `Warning: 299 - "unknown field
\\"spec.bogus\\""`. kubectl prints them (`Warning: unknown field "spec.bogus"`); client-go
hands them to a warning handler. Handlers call `add(text)` while serving a request; the
emulator's entry point writes the recorded headers onto the response
(k8s.io/apiserver/pkg/endpoints/filters/warning.go, 1.32):

- one header per distinct text (a repeated text is dropped), `299 - "<text>"` with `"` and
  `\\` escaped;
- once the texts total over 4096 characters, every warning is cut to 256 characters, and
  warnings added after the cut total reached 4096 are dropped.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import aiohttp.web

_TOTAL_LIMIT = 4 * 1024
_ITEM_LIMIT = 256

_recorder: contextvars.ContextVar[WarningRecorder | None] = contextvars.ContextVar(
    "kube_warnings", default=None
)


def header_value(text: str) -> str:
    """`net.NewWarningHeader(299, "", text)`: code 299, agent `-`, the text quoted."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'299 - "{escaped}"'


class WarningRecorder:
    """The warnings of one request."""

    def __init__(self) -> None:
        self._texts: list[str] = []

    def add(self, text: str) -> None:
        if text and text not in self._texts:
            self._texts.append(text)

    def headers(self) -> list[str]:
        """The header values to send, replaying the filter's cut and drop rules in order."""
        sent: list[str] = []
        written, truncating = 0, False
        for text in self._texts:
            if truncating and written >= _TOTAL_LIMIT:
                break
            if truncating:
                text = text[:_ITEM_LIMIT]
            elif written + len(text) > _TOTAL_LIMIT:
                truncating = True  # replay what was sent so far, each cut short
                sent = [earlier[:_ITEM_LIMIT] for earlier in [*sent, text]]
                written = sum(map(len, sent))
                continue
            sent.append(text)
            written += len(text)
        return [header_value(text) for text in sent]

    def write(self, response: aiohttp.web.StreamResponse) -> None:
        if response.prepared:
            return
        for value in self.headers():
            response.headers.add("Warning", value)


@contextlib.contextmanager
def recording() -> Iterator[WarningRecorder]:
    """Record the warnings of the request served inside the block."""
    recorder = WarningRecorder()
    token = _recorder.set(recorder)
    try:
        yield recorder
    finally:
        _recorder.reset(token)


def add(text: str) -> None:
    """A warning for the request being served (ignored outside `recording`)."""
    recorder = _recorder.get()
    if recorder is not None:
        recorder.add(text)
