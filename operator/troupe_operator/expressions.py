"""Task conditions (``tasks[].when``): a small expression language, parsed and evaluated here.

An expression reads the Workflow's inputs and the structured output of upstream tasks and
says whether a task runs::

    tasks.triage.json.deep == true and not (inputs.mode == "fast")
    tasks.triage.json.severity >= 3 or tasks.triage.json.kind in ["bug", "outage"]

Grammar (keywords are lower case; ``&&``, ``||`` and ``!`` are accepted for ``and``, ``or``
and ``not``)::

    expr       := or
    or         := and ("or" and)*
    and        := not ("and" not)*
    not        := "not" not | comparison
    comparison := operand (("==" | "!=" | "<" | "<=" | ">" | ">=" | "in") operand)?
    operand    := literal | list | path | "(" expr ")"
    literal    := number | 'string' | "string" | true | false | null
    list       := "[" (literal ("," literal)*)? "]"
    path       := "inputs" "." NAME | "tasks" "." TASK "." "json" ("." FIELD)+

Why a hand parser rather than Python's ``eval``, ``ast.literal_eval`` plus a walker, or a
library (CEL, JMESPath, simpleeval): the operator evaluates these expressions, so they must
not be able to run code, allocate without bound or loop; a recursive-descent parser over a
regular-expression tokenizer, with a length and a nesting bound and no function calls,
arithmetic or attribute access, makes that plain to read in one page, and its errors name
the column. The libraries that are safe (CEL's Python ports) are large and would have to be
in both the operator and the agent image for a language this small.

Values are JSON values. Equality is JSON equality (``true != 1``); ordering compares two
numbers or two strings and is false for anything else; ``in`` asks whether a value is in a
list literal, or a string in a string. A path that does not resolve (the field is absent,
or its task was skipped) is ``null``. An ``and``/``or``/``not`` operand, and the expression
as a whole, is true only when it is the boolean ``true``. This module refuses anything
else: no functions, no arithmetic, no computed keys, no I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

MAX_EXPRESSION_CHARS: Final = 1024
"""Longest condition: a condition is a test of a few fields, not a program."""
MAX_DEPTH: Final = 32
"""Deepest nesting of parentheses and ``not``: keeps the recursive parser far from Python's
recursion limit."""

JsonValue = Any
"""A value decoded from JSON: None, bool, int, float, str, list or dict."""

_TOKEN = re.compile(
    r"""\s*(?:
    (?P<number>-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)
    |(?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
    |(?P<op>==|!=|<=|>=|<|>|&&|\|\||!|\(|\)|\[|\]|,|\.)
    |(?P<name>[A-Za-z_][A-Za-z0-9_-]*)
    )""",
    re.VERBOSE,
)
_KEYWORDS: Final = {"and": "and", "or": "or", "not": "not", "in": "in", "&&": "and", "||": "or"}
_LITERALS: Final[dict[str, JsonValue]] = {"true": True, "false": False, "null": None}
_COMPARISONS: Final = frozenset({"==", "!=", "<", "<=", ">", ">=", "in"})


class ExpressionError(ValueError):
    """An expression that cannot be parsed, with a message for people."""


@dataclass(frozen=True)
class Literal:
    value: JsonValue


@dataclass(frozen=True)
class InputRef:
    name: str


@dataclass(frozen=True)
class FieldRef:
    """``tasks.TASK.json.FIELD...``: a field of an upstream task's structured output."""

    task: str
    path: tuple[str, ...]


@dataclass(frozen=True)
class Not:
    operand: Expr


@dataclass(frozen=True)
class Logical:
    operator: str  # "and" | "or"
    operands: tuple[Expr, ...]


@dataclass(frozen=True)
class Compare:
    operator: str
    left: Expr
    right: Expr


Expr = Literal | InputRef | FieldRef | Not | Logical | Compare


@dataclass(frozen=True)
class _Token:
    kind: str  # number, string, op, name, keyword, end
    text: str
    column: int


def _tokens(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            if text[position:].strip() == "":
                break
            column = position + len(text[position:]) - len(text[position:].lstrip()) + 1
            raise ExpressionError(f"unexpected character at column {column}")
        kind = match.lastgroup or "op"
        value = match.group(kind)
        column = match.start(kind) + 1
        if kind in ("name", "op") and value in _KEYWORDS:
            tokens.append(_Token("keyword", _KEYWORDS[value], column))
        elif kind == "op" and value == "!":
            tokens.append(_Token("keyword", "not", column))
        else:
            tokens.append(_Token(kind, value, column))
        position = match.end()
    tokens.append(_Token("end", "", len(text) + 1))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.position = 0
        self.depth = 0

    @property
    def token(self) -> _Token:
        return self.tokens[self.position]

    def take(self) -> _Token:
        token = self.token
        self.position += 1
        return token

    def expect(self, kind: str, text: str | None = None) -> _Token:
        token = self.token
        if token.kind != kind or (text is not None and token.text != text):
            wanted = f"'{text}'" if text else f"a {kind}"
            raise ExpressionError(f"expected {wanted} at column {token.column}, {_found(token)}")
        return self.take()

    def at(self, kind: str, *texts: str) -> bool:
        return self.token.kind == kind and (not texts or self.token.text in texts)

    def parse(self) -> Expr:
        expression = self.logical("or")
        if not self.at("end"):
            raise ExpressionError(f"unexpected {_found(self.token)[6:]}")
        return expression

    def logical(self, operator: str) -> Expr:
        parts = [self.logical("and") if operator == "or" else self.negation()]
        while self.at("keyword", operator):
            self.take()
            parts.append(self.logical("and") if operator == "or" else self.negation())
        return parts[0] if len(parts) == 1 else Logical(operator, tuple(parts))

    def nested(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExpressionError(f"nested more than {MAX_DEPTH} deep (MAX_DEPTH)")

    def negation(self) -> Expr:
        if self.at("keyword", "not"):
            self.take()
            self.nested()
            operand = self.negation()
            self.depth -= 1
            return Not(operand)
        return self.comparison()

    def comparison(self) -> Expr:
        left = self.operand()
        if (self.at("op") or self.at("keyword")) and self.token.text in _COMPARISONS:
            operator = self.take().text
            return Compare(operator, left, self.operand())
        return left

    def operand(self) -> Expr:
        token = self.token
        if self.at("op", "("):
            self.take()
            self.nested()
            inner = self.logical("or")
            self.depth -= 1
            self.expect("op", ")")
            return inner
        if self.at("op", "["):
            return Literal(self.list_literal())
        if token.kind == "name" and token.text in ("inputs", "tasks"):
            return self.path()
        return Literal(self.literal())

    def literal(self) -> JsonValue:
        token = self.take()
        if token.kind == "number":
            return json.loads(token.text)
        if token.kind == "string":
            return _unquote(token)
        if token.kind == "name" and token.text in _LITERALS:
            return _LITERALS[token.text]
        raise ExpressionError(
            f"expected a value, a path (inputs.NAME, tasks.NAME.json.FIELD) or '(' at column "
            f"{token.column}, {_found(token)}"
        )

    def list_literal(self) -> list[JsonValue]:
        self.expect("op", "[")
        items: list[JsonValue] = []
        while not self.at("op", "]"):
            if items:
                self.expect("op", ",")
            items.append(self.literal())
        self.take()
        return items

    def path(self) -> Expr:
        root = self.take().text
        self.expect("op", ".")
        name = self.expect("name").text
        if root == "inputs":
            return InputRef(name)
        self.expect("op", ".")
        self.expect("name", "json")
        fields: list[str] = []
        while self.at("op", "."):
            self.take()
            fields.append(self.expect("name").text)
        if not fields:
            raise ExpressionError(
                f"'tasks.{name}.json' must be followed by a field, e.g. tasks.{name}.json.FIELD"
            )
        return FieldRef(name, tuple(fields))


def _found(token: _Token) -> str:
    return "found the end" if token.kind == "end" else f"found '{token.text}'"


def _unquote(token: _Token) -> str:
    body = token.text[1:-1]
    if token.text[0] == "'":
        body = body.replace("\\'", "'").replace('"', '\\"')
    try:
        value = json.loads(f'"{body}"')
    except ValueError:
        raise ExpressionError(f"bad escape in the string at column {token.column}") from None
    return str(value)


@lru_cache(maxsize=4096)
def parse(text: str) -> Expr:
    """The expression's tree; raises :class:`ExpressionError` naming what is wrong and where."""
    if len(text) > MAX_EXPRESSION_CHARS:
        raise ExpressionError(
            f"is {len(text)} characters; at most {MAX_EXPRESSION_CHARS} (MAX_EXPRESSION_CHARS)"
        )
    if not text.strip():
        raise ExpressionError("is empty")
    return _Parser(text).parse()


def references(expression: Expr) -> Iterator[InputRef | FieldRef]:
    """Every input and upstream field the expression reads, in order."""
    match expression:
        case InputRef() | FieldRef():
            yield expression
        case Not(operand):
            yield from references(operand)
        case Logical(_, operands):
            for operand in operands:
                yield from references(operand)
        case Compare(_, left, right):
            yield from references(left)
            yield from references(right)
        case Literal():
            pass


def lookup(value: JsonValue, path: tuple[str, ...]) -> JsonValue:
    """The value at ``path`` inside a JSON object; None where a step is missing."""
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def evaluate(expression: Expr, inputs: Mapping[str, str], fields: Mapping[str, JsonValue]) -> bool:
    """Whether the expression holds; ``fields`` holds each upstream task's JSON by name."""
    return _value(expression, inputs, fields) is True


def _value(expression: Expr, inputs: Mapping[str, str], fields: Mapping[str, JsonValue]) -> Any:
    match expression:
        case Literal(value):
            return value
        case InputRef(name):
            return inputs.get(name)
        case FieldRef(task, path):
            return lookup(fields.get(task), path)
        case Not(operand):
            return _value(operand, inputs, fields) is not True
        case Logical("and", operands):
            return all(_value(operand, inputs, fields) is True for operand in operands)
        case Logical(_, operands):
            return any(_value(operand, inputs, fields) is True for operand in operands)
        case Compare(operator, left, right):
            return _compare(operator, _value(left, inputs, fields), _value(right, inputs, fields))
    raise AssertionError(expression)  # pragma: no cover - every kind is matched above


def _kind(value: JsonValue) -> str:
    if isinstance(value, bool) or value is None:
        return "literal"
    if isinstance(value, (int, float)):
        return "number"
    return type(value).__name__


def _same(left: JsonValue, right: JsonValue) -> bool:
    """JSON equality: ``true`` is not ``1``, in lists and objects as well."""
    if _kind(left) != _kind(right):
        return False
    if isinstance(left, list):
        return len(left) == len(right) and all(map(_same, left, right))
    if isinstance(left, dict):
        return left.keys() == right.keys() and all(_same(left[k], right[k]) for k in left)
    return bool(left == right)


def _compare(operator: str, left: JsonValue, right: JsonValue) -> bool:
    if operator == "==":
        return _same(left, right)
    if operator == "!=":
        return not _same(left, right)
    if operator == "in":
        if isinstance(right, list):
            return any(_same(left, item) for item in right)
        return isinstance(left, str) and isinstance(right, str) and left in right
    if _kind(left) != _kind(right) or _kind(left) not in ("number", "str"):
        return False
    match operator:
        case "<":
            return bool(left < right)
        case "<=":
            return bool(left <= right)
        case ">":
            return bool(left > right)
        case _:
            return bool(left >= right)


def fields_read(conditions: Iterable[str], task: str) -> frozenset[tuple[str, ...]]:
    """The fields of ``task``'s JSON that these conditions read (ones that do not parse, none)."""
    paths: set[tuple[str, ...]] = set()
    for text in conditions:
        try:
            expression = parse(text)
        except ExpressionError:
            continue
        paths.update(
            ref.path
            for ref in references(expression)
            if isinstance(ref, FieldRef) and ref.task == task
        )
    return frozenset(paths)


def project(value: JsonValue, paths: Iterable[tuple[str, ...]]) -> dict[str, JsonValue]:
    """Only the fields at ``paths`` of a JSON object, nested as they were; absent ones left out."""
    view: dict[str, JsonValue] = {}
    for path in sorted(paths, key=len):  # a shorter path's value already holds a longer one's
        parent = lookup(value, path[:-1])
        if not isinstance(parent, dict) or path[-1] not in parent:
            continue
        target = view
        for key in path[:-1]:
            step = target.setdefault(key, {})
            if not isinstance(step, dict):
                break
            target = step
        else:
            target.setdefault(path[-1], parent[path[-1]])
    return view
