"""Troupe objects judged as the API server judges them, in sentences a person can act on.

``troupe validate`` and ``troupe run`` must refuse exactly what ``kubectl
apply`` would get refused, or a manifest that passed them fails on the
cluster (or the reverse). So they do not trust the pydantic models, which
coerce ``"3"`` into ``3``; they use the CRD's own ``openAPIV3Schema``, built
from the models by :mod:`troupe_operator.api.crd`, with the API server's
rules around it:

- the object's group, version and kind are served (``troupe.dev`` has no kind
  ``Workflows``);
- ``metadata``: a name that is a DNS-1123 subdomain, as for every custom
  resource; a namespace that is a DNS-1123 label; label keys and values and
  annotation keys as the API server allows them; no unknown metadata fields;
- the schema: types, bounds, patterns, enums, formats, required fields;
- no field the schema does not declare, as ``kubectl apply``'s default
  strict field validation refuses them (a mistyped ``dependsOn`` would
  otherwise be dropped in silence);
- ``status`` is ignored, as the API server ignores it on create, and ``null``
  fields are dropped, as it drops them from fields that are not nullable.

Each problem is one line: the field path, what is accepted and (shortened)
what was given. This module refuses to check meaning (cycles, agents that
exist): that is :mod:`troupe_operator.spec_checks`, run only on objects
that pass here.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterator
from functools import cache
from typing import Any, Final

import jsonschema
from jsonschema.exceptions import ValidationError

from troupe_operator.api.common import (
    DNS_LABEL_PATTERN,
    DNS_SUBDOMAIN_PATTERN,
    GROUP,
    QUANTITY_PATTERN,
    VERSION,
)
from troupe_operator.api.crd import KINDS, JsonSchema, Kind, open_api_schema

KINDS_BY_NAME: Final = {kind.kind: kind for kind in KINDS}
SHOWN_CHARS: Final = 40
"""Most characters of a given value quoted back in a message."""

OBJECT_META_FIELDS: Final = frozenset(
    {
        "name",
        "generateName",
        "namespace",
        "labels",
        "annotations",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "ownerReferences",
        "finalizers",
        "managedFields",
        "selfLink",
    }
)

_NAME_RULE: Final = "lowercase letters, digits and '-', starting and ending with a letter or digit"
PATTERN_RULES: Final = {
    DNS_LABEL_PATTERN: f"a name of {_NAME_RULE}",
    DNS_SUBDOMAIN_PATTERN: f"a name of {_NAME_RULE} ('.' allowed between parts)",
    QUANTITY_PATTERN: "a quantity such as 2, 500m or 4Gi",
}
_QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_DNS_SUBDOMAIN = re.compile(DNS_SUBDOMAIN_PATTERN)
_DNS_LABEL = re.compile(DNS_LABEL_PATTERN)


def served_kind(api_version: str, kind: str) -> Kind | None:
    """The Troupe kind an object is, None if it is not Troupe's; ValueError if unserved."""
    group, _, version = api_version.rpartition("/")
    if group != GROUP:
        return None
    if version != VERSION:
        raise ValueError(f"apiVersion {api_version!r}: {GROUP} serves only {GROUP}/{VERSION}")
    served = KINDS_BY_NAME.get(kind)
    if served is None:
        kinds = ", ".join(sorted(KINDS_BY_NAME))
        raise ValueError(f"kind {kind!r}: {GROUP}/{VERSION} serves only {kinds}")
    return served


def object_problems(kind: Kind, body: dict[str, Any]) -> list[str]:
    """Everything the API server would refuse in this object, one line each."""
    problems = _metadata_problems(body.get("metadata"), kind.namespaced)
    admitted = without_nulls({key: value for key, value in body.items() if key != "status"})
    problems += [_sentence(error) for error in _schema_errors(kind.kind, admitted)]
    problems += _unknown_fields(admitted, open_api_schema(kind))
    return problems


def without_nulls(value: Any) -> Any:
    """The object as the API server validates it: it drops ``null`` from every field whose
    schema is not ``nullable`` (none of Troupe's are) before validation and defaulting."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(item) for item in value]
    return value


def _metadata_problems(metadata: Any, namespaced: bool) -> list[str]:
    if not isinstance(metadata, dict):
        return ["metadata: must be a mapping with at least a name"]
    problems = [
        f"metadata.{field}: unknown field" for field in metadata if field not in OBJECT_META_FIELDS
    ]
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        problems.append("metadata.name: is required (kubectl apply needs a name)")
    elif len(name) > 253 or not _DNS_SUBDOMAIN.fullmatch(name):
        problems.append(
            f"metadata.name: must be {PATTERN_RULES[DNS_SUBDOMAIN_PATTERN]}, "
            f"at most 253 characters, not {_shown(name)}"
        )
    namespace = metadata.get("namespace")
    if (
        namespaced
        and namespace is not None
        and (
            not isinstance(namespace, str)
            or len(namespace) > 63
            or not _DNS_LABEL.fullmatch(namespace)
        )
    ):
        problems.append(
            f"metadata.namespace: must be {PATTERN_RULES[DNS_LABEL_PATTERN]}, at most 63 "
            f"characters, not {_shown(namespace)}"
        )
    problems += _map_problems("metadata.labels", metadata.get("labels"), label_values=True)
    problems += _map_problems("metadata.annotations", metadata.get("annotations"))
    return problems


def _map_problems(path: str, value: Any, label_values: bool = False) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        return [f"{path}: must be a mapping of strings to strings"]
    problems = [
        f"{path}: key {_shown(key)} is not a qualified name such as 'app' or 'example.com/app'"
        for key in value
        if not _is_qualified_name(key)
    ]
    if label_values:
        problems += [
            f"{path}.{key}: a label value is at most 63 letters, digits, '-', '_' or '.', "
            f"starting and ending with a letter or digit, not {_shown(text)}"
            for key, text in value.items()
            if text and (len(text) > 63 or not _QUALIFIED_NAME.fullmatch(text))
        ]
    return problems


def _is_qualified_name(key: str) -> bool:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.fullmatch(prefix)):
        return False
    return len(name) <= 63 and _QUALIFIED_NAME.fullmatch(name) is not None


@cache
def _validator(kind: str) -> jsonschema.protocols.Validator:
    schema = _as_json_schema(open_api_schema(KINDS_BY_NAME[kind]))
    checker = jsonschema.FormatChecker(formats=())
    checker.checks("cidr", raises=ValueError)(_is_cidr)
    return jsonschema.Draft4Validator(schema, format_checker=checker)


def _is_cidr(value: object) -> bool:
    if isinstance(value, str):
        ipaddress.ip_network(value, strict=False)
    return True


def _as_json_schema(schema: Any) -> Any:
    """The OpenAPI v3.0 and Kubernetes extensions as plain JSON Schema keywords."""
    if isinstance(schema, list):
        return [_as_json_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    converted = {k: _as_json_schema(v) for k, v in schema.items() if k != "nullable"}
    if schema.get("nullable") and "type" in converted:
        converted = {"anyOf": [{"type": "null"}, converted]}
    return converted


def _schema_errors(kind: str, body: dict[str, Any]) -> Iterator[ValidationError]:
    errors = sorted(_validator(kind).iter_errors(body), key=lambda e: list(map(str, e.path)))
    for error in errors:
        if error.validator == "anyOf" and error.context:
            # int-or-string and nullable fields: report the one branch that explains it
            yield min(error.context, key=lambda e: e.validator == "type")
        else:
            yield error


def _path(parts: Any) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text.lstrip(".") or "(object)"


def _sentence(error: ValidationError) -> str:
    value: Any = error.instance
    rule: Any = error.validator_value
    path = _path(error.absolute_path)
    match error.validator:
        case "required":
            missing = next((f for f in rule if f not in value), rule[0])
            return f"{_path([*error.absolute_path, missing])}: is required"
        case "type":
            wanted = " or ".join(_a(t) for t in ([rule] if isinstance(rule, str) else rule))
            return f"{path}: must be {wanted}, not {_described(value)}"
        case "enum":
            choices = ", ".join(json.dumps(choice) for choice in rule)
            return f"{path}: must be one of {choices}, not {_shown(value)}"
        case "pattern":
            wanted = PATTERN_RULES.get(rule, f"text matching {rule}")
            if rule == r"\S":
                wanted = "text with something other than spaces"
            return f"{path}: must be {wanted}, not {_shown(value)}"
        case "minLength" | "maxLength":
            bound = "at least" if error.validator == "minLength" else "at most"
            return f"{path}: must be {bound} {rule} characters, not {len(value)}"
        case "minItems" | "maxItems":
            bound = "at least" if error.validator == "minItems" else "at most"
            return f"{path}: must have {bound} {rule} item{'s' * (rule != 1)}, not {len(value)}"
        case "minimum" | "maximum":
            bound = "at least" if error.validator == "minimum" else "at most"
            return f"{path}: must be {bound} {rule}, not {_shown(value)}"
        case "oneOf" if all(list(branch) == ["required"] for branch in rule):
            names = [field for branch in rule for field in branch["required"]]
            given = [field for field in names if field in value]
            choice = " or ".join(names)
            if not given:
                return f"{path}: must give {choice}"
            return f"{path}: must give {choice}, not both {' and '.join(given)}"
        case "format":
            return f"{path}: must be a {rule.upper()} such as 10.0.0.0/8, not {_shown(value)}"
        case _:
            return f"{path}: {error.message[:200]}"


def _unknown_fields(value: Any, schema: JsonSchema, path: str = "") -> list[str]:
    """Fields the schema does not declare (strict field validation, as kubectl applies)."""
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [
            problem
            for index, item in enumerate(value)
            for problem in _unknown_fields(item, schema["items"], f"{path}[{index}]")
        ]
    if not isinstance(value, dict) or schema.get("x-kubernetes-int-or-string"):
        return []
    properties: dict[str, JsonSchema] = schema.get("properties") or {}
    additional = schema.get("additionalProperties")
    problems = []
    for key, item in value.items():
        where = f"{path}.{key}" if path else key
        if key in properties:
            if where != "metadata":
                problems += _unknown_fields(item, properties[key], where)
        elif isinstance(additional, dict):
            problems += _unknown_fields(item, additional, where)
        elif properties:
            known = ", ".join(sorted(properties))
            problems.append(f"{where}: unknown field (known here: {known})")
    return problems


def _a(type_name: str) -> str:
    noun = {"object": "mapping", "array": "list", "string": "string", "null": "null"}.get(
        type_name, type_name
    )
    return f"an {noun}" if noun[0] in "aeiou" else f"a {noun}"


def _described(value: Any) -> str:
    kind = {dict: "mapping", list: "list", str: "string", bool: "boolean", type(None): "null"}
    noun = kind.get(type(value), "number")
    return f"the {noun} {_shown(value)}" if noun not in ("mapping", "list", "null") else f"a {noun}"


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."
