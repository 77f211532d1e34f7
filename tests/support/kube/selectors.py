"""`labelSelector` and `fieldSelector` query parameters, parsed and matched like the API server.

kmock ignores both parameters and returns every object of a resource, so an operator that
lists "the Jobs of this Workflow" by label would see everybody's Jobs.

Label selectors: `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`; also
from `matchLabels` / `matchExpressions` objects (RBAC aggregation rules).
Field selectors: `path=v`, `path==v`, `path!=v` on any dotted path (`metadata.name`,
`metadata.namespace`, `status.phase`, ...); the real server allows only a few paths per kind,
here every path is allowed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from tests.support.kube.errors import bad_request
from tests.support.kube.resources import KubeObject

_LABEL_REQUIREMENT = re.compile(
    r"""\s*(?P<negated>!)?\s*(?P<key>[A-Za-z0-9_./-]+)\s*
        (?:(?P<op>==|=|!=)\s*(?P<value>[A-Za-z0-9_.-]*)
          |\s+(?P<setop>in|notin)\s*\((?P<values>[^)]*)\))?\s*(?:,|$)""",
    re.VERBOSE,
)
_FIELD_REQUIREMENT = re.compile(
    r"\s*(?P<path>[A-Za-z0-9_.-]+)\s*(?P<op>==|=|!=)\s*(?P<value>[^,]*)(?:,|$)"
)

Requirement = Callable[[dict[str, str]], bool]


def _label_requirement(key: str, negated: bool, op: str | None, values: set[str]) -> Requirement:
    if op in {"=", "==", "in"}:
        return lambda labels: labels.get(key) in values
    if op in {"!=", "notin"}:
        return lambda labels: labels.get(key) not in values
    if negated:
        return lambda labels: key not in labels
    return lambda labels: key in labels


@dataclass(frozen=True)
class LabelSelector:
    requirements: tuple[Requirement, ...] = ()

    @classmethod
    def parse(cls, text: str) -> LabelSelector:
        requirements: list[Requirement] = []
        position = 0
        while position < len(text.strip()):
            match = _LABEL_REQUIREMENT.match(text, position)
            if match is None or match.end() == position:
                raise bad_request(f"unable to parse requirement: {text[position:]!r}")
            op = match["op"] or match["setop"]
            if match["values"] is not None:
                values = {value.strip() for value in match["values"].split(",")}
            else:
                values = {match["value"] or ""}
            requirements.append(
                _label_requirement(match["key"], bool(match["negated"]), op, values)
            )
            position = match.end()
        return cls(tuple(requirements))

    @classmethod
    def from_object(cls, selector: KubeObject) -> LabelSelector:
        """A `metav1.LabelSelector` object (`matchLabels`, `matchExpressions`)."""
        requirements = [
            _label_requirement(key, False, "=", {value})
            for key, value in (selector.get("matchLabels") or {}).items()
        ]
        for expression in selector.get("matchExpressions") or []:
            operator = expression["operator"]
            requirements.append(
                _label_requirement(
                    expression["key"],
                    operator == "DoesNotExist",
                    {"In": "in", "NotIn": "notin"}.get(operator),
                    set(expression.get("values") or ()),
                )
            )
        return cls(tuple(requirements))

    def matches(self, obj: KubeObject) -> bool:
        labels = obj.get("metadata", {}).get("labels") or {}
        return all(requirement(labels) for requirement in self.requirements)


def _field_value(obj: KubeObject, path: str) -> str:
    value: object = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if value is None:
        return ""
    return str(value).lower() if isinstance(value, bool) else str(value)


@dataclass(frozen=True)
class FieldSelector:
    requirements: tuple[tuple[str, bool, str], ...] = ()

    @classmethod
    def parse(cls, text: str) -> FieldSelector:
        requirements: list[tuple[str, bool, str]] = []
        position = 0
        while position < len(text.strip()):
            match = _FIELD_REQUIREMENT.match(text, position)
            if match is None or match.end() == position:
                raise bad_request(f"invalid field selector: {text[position:]!r}")
            requirements.append((match["path"], match["op"] != "!=", match["value"].strip()))
            position = match.end()
        return cls(tuple(requirements))

    @property
    def name(self) -> str | None:
        """The `metadata.name=X` value, if any: lets the store look one object up directly."""
        for path, equal, value in self.requirements:
            if path == "metadata.name" and equal:
                return value
        return None

    def matches(self, obj: KubeObject) -> bool:
        return all(
            (_field_value(obj, path) == value) == equal for path, equal, value in self.requirements
        )


@dataclass(frozen=True)
class ObjectFilter:
    """Everything a list or watch request filters by."""

    namespace: str | None = None
    labels: LabelSelector = LabelSelector()
    fields: FieldSelector = FieldSelector()

    def matches(self, obj: KubeObject) -> bool:
        metadata = obj.get("metadata", {})
        if self.namespace is not None and metadata.get("namespace") != self.namespace:
            return False
        return self.labels.matches(obj) and self.fields.matches(obj)
