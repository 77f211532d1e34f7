"""YAML files read as ``kubectl apply -f`` reads them: into JSON, within stated bounds.

kubectl turns each YAML document into JSON before the API server sees it, so
a value is what its JSON says: a date ``2025-01-01`` is the string
``"2025-01-01"``, a key ``1`` is ``"1"``, a repeated key keeps its last value
(as kubectl keeps it: the API server never sees the first) with a warning, and
what JSON cannot carry (NaN, infinity, integers beyond 64 bits) is refused.
PyYAML would hand Python dates and alias-expanded structures of any size to
the checks, and its recursive composer turns a deeply nested file into a
``RecursionError``; this module refuses all of that first, by scanning
PyYAML's event stream (which is iterative) before anything is constructed.

Every bound is named in the message that enforces it. This module refuses
to judge what the documents mean: that is :mod:`troupe_operator.admission`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

MAX_FILE_BYTES: Final = 16 * 1024 * 1024
"""Most bytes read from one file: room for several objects at the API server's request limit."""

MAX_DOCUMENT_BYTES: Final = 3 * 1024 * 1024
"""kube-apiserver refuses request bodies over 3 MiB (``Request entity too large``)."""

MAX_DEPTH: Final = 100
"""Most levels of nesting; the deepest Troupe object (a Tenant's owners) has 5."""

MAX_VALUES: Final = 100_000
"""Most values (scalars, lists, mappings) one document may expand to, aliases included:
a Workflow at its 1,000-task limit has about 10,000, a YAML alias bomb has billions."""

INT64: Final = 2**63
"""Kubernetes stores integers as 64-bit; JSON numbers beyond are not integers there."""


_TOO_BIG: Final = f"a document is over the API server's request limit of {MAX_DOCUMENT_BYTES} bytes"
_TOO_DEEP: Final = f"a value is nested more than {MAX_DEPTH} levels deep, the most troupe reads"


class DocumentError(ValueError):
    """A file, or a document in it, that is not a JSON-compatible object; one line."""


@dataclass(frozen=True)
class Document:
    """One YAML document of one file, as the JSON kubectl would send."""

    source: str
    index: int
    body: Any
    warnings: tuple[str, ...] = ()
    """What kubectl would take without a word but a person should hear (a repeated key)."""


def read_documents(path: str | Path) -> list[Document]:
    """Every non-empty document of a file, in order; DocumentError on the first problem."""
    source = str(path)
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        raise DocumentError(f"{source}: cannot read: {error.strerror or error}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise DocumentError(f"{source}: file is over the {MAX_FILE_BYTES} bytes troupe reads")
    return parse_documents(raw.decode("utf-8", errors="replace"), source)


def parse_documents(text: str, source: str) -> list[Document]:
    """Every non-empty document of a text; invalid UTF-8 should arrive as U+FFFD, as Go's JSON
    encoding (and so kubectl) turns it."""
    try:
        return [
            Document(source, index, body, warnings)
            for index, (body, warnings) in enumerate(_bodies(text), start=1)
        ]
    except DocumentError as error:
        raise DocumentError(f"{source}: {error}") from None
    except yaml.YAMLError as error:
        raise DocumentError(f"{source}: not valid YAML{_where(error)}: {_problem(error)}") from None
    except json.JSONDecodeError as error:
        raise DocumentError(
            f"{source}: not valid JSON at line {error.lineno}: {error.msg}"
        ) from None
    except ValueError:  # int() refuses numbers of over 4300 digits
        raise DocumentError(
            f"{source}: a number has thousands of digits; integers are 64-bit"
        ) from None


def _bodies(text: str) -> Iterator[tuple[Any, tuple[str, ...]]]:
    if text.lstrip().startswith("{"):
        yield from ((body, ()) for body in _json_bodies(text))
        return
    _check_shape(text)
    loader = _JsonLoader(text)
    try:
        while loader.check_data():  # type: ignore[no-untyped-call]
            body = loader.get_data()
            warnings, loader.warnings = tuple(loader.warnings), []
            if body is not None:
                yield _as_json(body), warnings
    finally:
        loader.dispose()


def _json_bodies(text: str) -> Iterator[Any]:
    """kubectl reads a file that starts with ``{`` as a stream of JSON objects, not as YAML."""
    _check_json_depth(text)
    decoder = json.JSONDecoder(parse_constant=_not_json)
    position = 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position >= len(text):
            return
        start = position
        body, position = decoder.raw_decode(text, position)
        if len(text[start:position].encode()) > MAX_DOCUMENT_BYTES:
            raise DocumentError(_TOO_BIG)
        yield _as_json(body)


def _not_json(constant: str) -> Any:
    raise DocumentError(f"{constant} is not a number JSON can carry")


def _check_json_depth(text: str) -> None:
    """Python's JSON parser recurses; count the nesting first, without recursing."""
    depth = 0
    in_string = escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif in_string:
            escaped = char == "\\"
            in_string = char != '"'
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise DocumentError(_TOO_DEEP)
        elif char in "]}":
            depth -= 1


def _check_shape(text: str) -> None:
    """Refuse deep nesting and alias expansion beyond the bounds, before constructing."""
    depth = 0
    values: list[int] = []  # expanded value counts of the open collections
    anchored: dict[str, int] = {}
    anchors_open: list[str | None] = []
    document_start = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.DocumentStartEvent):
            document_start = event.start_mark.index if event.start_mark else 0
            values = [0]
            anchored.clear()
        elif isinstance(event, yaml.DocumentEndEvent):
            end = event.end_mark.index if event.end_mark else len(text)
            if len(text[document_start:end].encode()) > MAX_DOCUMENT_BYTES:
                raise DocumentError(_TOO_BIG)
        elif isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise DocumentError(f"{_line(event)}{_TOO_DEEP}")
            values.append(1)
            anchors_open.append(event.anchor)
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
            count = values.pop()
            anchor = anchors_open.pop()
            if anchor is not None:
                anchored[anchor] = count
            _add(values, count, event)
        elif isinstance(event, yaml.ScalarEvent):
            if event.anchor is not None:
                anchored[event.anchor] = 1
            _add(values, 1, event)
        elif isinstance(event, yaml.AliasEvent):
            _add(values, anchored.get(event.anchor or "", 1), event)


def _add(values: list[int], count: int, event: yaml.Event) -> None:
    values[-1] += count
    if sum(values) > MAX_VALUES:
        raise DocumentError(
            f"{_line(event)}a document expands to more than {MAX_VALUES} values "
            "(aliases included), the most troupe reads"
        )


def _line(event: yaml.Event) -> str:
    return f"line {event.start_mark.line + 1}: " if event.start_mark else ""


class _JsonLoader(yaml.SafeLoader):
    """SafeLoader that builds what kubectl's YAML-to-JSON conversion would."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.warnings: list[str] = []

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        written = {id(key_node) for key_node, _ in node.value}  # merged (<<) keys are not
        self.flatten_mapping(node)
        mapping: dict[Any, Any] = {}
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = _json_key(self.construct_object(key_node, deep=True))
            if id(key_node) in written:
                if key in seen:
                    self.warnings.append(
                        f"line {key_node.start_mark.line + 1}: key {key!r} is given twice in "
                        "one mapping; the last value is used, as kubectl uses it"
                    )
                seen.add(key)
            mapping[key] = self.construct_object(value_node, deep=deep)
        return mapping


def _timestamp_as_text(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    return str(loader.construct_scalar(node))  # type: ignore[arg-type]


def _binary_as_base64(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    return "".join(str(loader.construct_scalar(node)).split())  # type: ignore[arg-type]


_JsonLoader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp_as_text)
_JsonLoader.add_constructor("tag:yaml.org,2002:binary", _binary_as_base64)


def _json_key(key: Any) -> str:
    """A mapping key as JSON spells it (kubectl's conversion turns 1 into "1")."""
    if isinstance(key, str):
        return key
    if key is None:
        return "null"
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, int | float):
        return str(_json_scalar(key, "a key"))
    raise DocumentError(f"a mapping key is a {type(key).__name__}, which JSON cannot carry")


def _json_scalar(value: int | float, what: str) -> int | float:
    if isinstance(value, float) and not math.isfinite(value):
        raise DocumentError(f"{what} is {value}, which JSON cannot carry")
    if isinstance(value, int) and not -INT64 <= value < INT64:
        raise DocumentError(f"{what} has {len(str(abs(value)))} digits; integers are 64-bit")
    return value


def _as_json(body: Any) -> Any:
    """Check every scalar (iteratively: depth is bounded, but cheaply so)."""
    pending = [body]
    while pending:
        value = pending.pop()
        if isinstance(value, dict):
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
        elif isinstance(value, bool) or value is None or isinstance(value, str):
            continue
        elif isinstance(value, int | float):
            _json_scalar(value, "a number")
        else:
            raise DocumentError(f"a value is a {type(value).__name__}, which JSON cannot carry")
    return body


def _where(error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None)
    return f" at line {mark.line + 1}" if mark is not None else ""


def _problem(error: yaml.YAMLError) -> str:
    return str(getattr(error, "problem", None) or error).splitlines()[0]
