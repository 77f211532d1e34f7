"""Request bodies read as JSON the way kube-apiserver's decoder reads them, within Python's means.

kube-apiserver decodes with Go's `encoding/json` (and `sigs.k8s.io/json` in strict mode):

- a body nested deeper than 10000 levels is a syntax error, `invalid character '{' exceeded
  max depth` (Go's scanner limit); the caller turns it into the verb's 400 BadRequest;
- a key repeated in one object keeps its last value, and strict decoding (fieldValidation
  `Warn` or `Strict`) reports it as `duplicate field "spec.tasks[0].name"` (`parse` returns
  these paths, in document order of the objects holding them);

Python's `json` module recurses, and so does the emulator's own code (copies, pruning,
patches): a body nested deeper than `MAX_DEPTH` levels would end in a `RecursionError` (a
500) somewhere. Such bodies are refused up front with 400 BadRequest, `the emulator cannot
handle JSON nested deeper than 300 levels (kube-apiserver accepts up to 10000)`: the one
place where the emulator refuses what a real server stores. Depth is measured without
parsing (strings removed, brackets counted), so measuring never recurses either.

Not reproduced: Go's wording of other syntax errors (Python's `json` words them), and Go's
leniency towards invalid UTF-8 (replaced by U+FFFD in Go, a syntax error here).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

GO_MAX_DEPTH = 10_000
"""encoding/json's `maxNestingDepth`: deeper input is a syntax error for kube-apiserver."""

MAX_DEPTH = 300
"""The deepest body the emulator handles (its recursive code breaks at about 480 levels)."""

_STRINGS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_OPENERS = frozenset(b"{[")
_NOT_BRACKETS = bytes(set(range(256)) - set(b"{}[]"))


class BodyError(ValueError):
    """The body is not JSON the emulator can read; the message is the decoder's error."""


class BeyondEmulator(BodyError):
    """The body is JSON kube-apiserver would read, nested deeper than the emulator can go."""


@dataclass(frozen=True)
class Body:
    value: Any
    duplicates: tuple[str, ...] = ()
    """Paths of keys repeated within one object, as strict decoding names them."""


def _first_opener_beyond(raw: bytes, limit: int) -> str | None:
    """The bracket that first nests the body deeper than `limit` levels, if any."""
    brackets = _STRINGS.sub(b"", raw).translate(None, _NOT_BRACKETS)
    if brackets.count(b"{") + brackets.count(b"[") <= limit:
        return None
    depth = 0
    for byte in brackets:
        depth += 1 if byte in _OPENERS else -1
        if depth > limit:
            return chr(byte)
    return None


def _check_depth(raw: bytes) -> None:
    opener = _first_opener_beyond(raw, MAX_DEPTH)
    if opener is None:
        return
    if _first_opener_beyond(raw, GO_MAX_DEPTH) is not None:
        raise BodyError(f"invalid character '{opener}' exceeded max depth")
    raise BeyondEmulator(
        f"the emulator cannot handle JSON nested deeper than {MAX_DEPTH} levels"
        f" (kube-apiserver accepts up to {GO_MAX_DEPTH})"
    )


def is_readable(raw: bytes) -> bool:
    """Whether `parse` may be tried without risking the interpreter's stack."""
    return _first_opener_beyond(raw, MAX_DEPTH) is None


def _duplicate_paths(value: Any, repeated: dict[int, list[str]]) -> tuple[str, ...]:
    """`a.b[0].c` paths of the repeated keys, walking objects in document order."""
    found: list[str] = []
    pending: list[tuple[str, Any]] = [("", value)]
    while pending:
        prefix, item = pending.pop()
        if isinstance(item, dict):
            joiner = "." if prefix else ""
            found += [f"{prefix}{joiner}{key}" for key in repeated.get(id(item), ())]
            children = [(f"{prefix}{joiner}{key}", child) for key, child in item.items()]
        elif isinstance(item, list):
            children = [(f"{prefix}[{index}]", child) for index, child in enumerate(item)]
        else:
            continue
        pending += reversed(children)
    return tuple(found)


def parse(raw: bytes) -> Body:
    """The body as JSON, with the paths of its duplicate fields; `BodyError` if unreadable."""
    _check_depth(raw)
    repeated: dict[int, list[str]] = {}

    def keep_last(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        duplicates: list[str] = []
        for key, item in pairs:
            if key in obj and key not in duplicates:
                duplicates.append(key)
            obj[key] = item
        if duplicates:
            repeated[id(obj)] = duplicates
        return obj

    try:
        value = json.loads(raw, object_pairs_hook=keep_last)
    except ValueError as exc:
        raise BodyError(str(exc)) from exc
    return Body(value, _duplicate_paths(value, repeated) if repeated else ())
