"""Custom resources checked against their CRD schema in kube-apiserver's words (1.32).

kube-apiserver validates a custom resource with kube-openapi's `validate` package and turns
each of its errors into a field error (`kubeOpenAPIResultToFieldErrors` in
k8s.io/apiextensions-apiserver/pkg/apiserver/validation/validation.go). The emulator walks
the schema the same way, so a 422 lists the same causes with the same words:

- `type`: `spec.retries: Invalid value: "string": spec.retries in body must be of type
  integer: "string"` (the value shown is the type found, never the value itself);
- `required`: `spec.size: Required value`;
- `enum`: `spec.mode: Unsupported value: "x": supported values: "a", "b"`;
- `maxLength`: `spec.name: Too long: may not be more than 253 bytes`;
- `maxItems`, `maxProperties`: `spec.tasks: Too many: 1001: must have at most 1000 items`;
- `minLength`: `spec.name: Invalid value: "": spec.name in body should be at least 1 chars
  long`; `minItems`: `spec.tasks: Invalid value: 0: spec.tasks in body should have at
  least 1 items`;
- `minimum`, `maximum`: `spec.size: Invalid value: -1: spec.size in body should be greater
  than or equal to 0`;
- `pattern`: `spec.x: Invalid value: "A": spec.x in body should match '^[a-z]+$'`;
- `format` (`kube.formats`): `spec.cidr: Invalid value: "x": spec.cidr in body must be of
  type cidr: "x"`;
- `anyOf`, `oneOf`, `allOf`, `not`: `<nil>: Invalid value: "": "spec.cpu" must validate at
  least one schema (anyOf)` (the field is `<nil>`: these errors carry no path).

As kube-openapi does: a string stops at its first failing rule (maxLength, minLength,
pattern); numbers report multipleOf, minimum, maximum (integers against bounds cut to
integers, floats printed as Go prints them); arrays report their items before their size;
`null` is checked for its type and enum only; a failed `anyOf` or `oneOf` adds the errors
of its first failing branch. Writes to the `status` subresource check `status` alone, named
from `status` (`status.phase: ... phase in body must be of type string: "integer"`).

Values are never truncated (kube-apiserver truncates none): messages stay short because
`type`, `maxLength` and `maxItems` name a type, a limit or a count, never the value.
Not checked: CEL rules (`x-kubernetes-validations`), `uniqueItems` on objects beyond plain
equality, validation ratcheting (an update must pass even where it leaves a field as it
was invalid), kube-openapi's choice of the "best" failing `anyOf` branch (the first here).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.support.kube import fields, formats, gotext

_NULL = "null"


@dataclass(frozen=True)
class _Problem:
    """One kube-openapi error: which mapping it gets, its path (`name`) and its text."""

    kind: str
    name: str
    message: str
    value: Any = None
    limit: Any = None


def _in_body(name: str, text: str) -> str:
    return f"{name} in body {text}"


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "string"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return "array" if isinstance(value, list) else "object"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _types(schema: dict[str, Any]) -> list[str]:
    if schema.get("x-kubernetes-int-or-string"):
        return ["integer", "string"]
    return [schema["type"]] if schema.get("type") else []


def _format(schema: dict[str, Any]) -> str:
    """The schema's format if apiextensions keeps it (it drops unsupported ones)."""
    name = schema.get("format") or ""
    return name if formats.supported(name) else ""


def _type_problems(schema: dict[str, Any], value: Any, name: str) -> list[_Problem]:
    types, format_name = _types(schema), _format(schema)
    if not types and not format_name:
        return []
    wanted = ",".join(types)
    if value is None:
        if types and _NULL not in types and not schema.get("nullable"):
            return [_Problem("type", name, _type_fail(name, wanted, _NULL), _NULL)]
        return []
    found = _json_type(value)
    numeric = "integer" in types or "number" in types
    if format_name and not numeric and isinstance(value, str | list):
        return []  # kube-openapi leaves strings and arrays with a format to the format check
    integral_float = found == "number" and "integer" in types and float(value).is_integer()
    int_as_number = found == "integer" and "number" in types
    if found in types or integral_float or int_as_number:
        return []
    return [_Problem("type", name, _type_fail(name, wanted, found), found)]


def _type_fail(name: str, wanted: str, found: str) -> str:
    return _in_body(name, f"must be of type {wanted}: {gotext.quote(found)}")


def _composite(name: str, text: str) -> _Problem:
    return _Problem("composite", name, f"{gotext.quote(name)} {text}")


def _composition_problems(schema: dict[str, Any], value: Any, name: str) -> list[_Problem]:
    problems: list[_Problem] = []
    if branches := schema.get("anyOf"):
        results = [_problems(branch, value, name) for branch in branches]
        if all(results):
            problems += [_composite(name, "must validate at least one schema (anyOf)"), *results[0]]
    if branches := schema.get("oneOf"):
        results = [_problems(branch, value, name) for branch in branches]
        valid = sum(not result for result in results)
        if valid != 1:
            found = "Found none valid" if not valid else f"Found {valid} valid alternatives"
            problems.append(
                _composite(name, f"must validate one and only one schema (oneOf). {found}")
            )
            problems += results[0] if not valid else []
    if branches := schema.get("allOf"):
        results = [_problems(branch, value, name) for branch in branches]
        problems += [problem for result in results for problem in result]
        failed = sum(bool(result) for result in results)
        if failed:
            none = ". None validated" if failed == len(results) else ""
            problems.append(_composite(name, f"must validate all the schemas (allOf){none}"))
    if "not" in schema and not _problems(schema["not"], value, name):
        problems.append(_composite(name, "must not validate the schema (not)"))
    return problems


def _go_pattern(pattern: str) -> str:
    """An RE2 pattern for Python's `re`: `$` and `\\z` (outside classes) end the text."""
    translated, in_class, escaped = [], False, False
    for char in pattern:
        if escaped:
            translated.append("Z" if char == "z" and not in_class else char)
            escaped = False
            continue
        escaped = char == "\\"
        in_class = (in_class or char == "[") and not (in_class and char == "]")
        translated.append("\\Z" if char == "$" and not in_class else char)
    return "".join(translated)


@functools.cache
def _compiled(pattern: str) -> re.Pattern[str] | None:
    """The pattern, or None if Python cannot read it (then it is not checked)."""
    try:
        return re.compile(_go_pattern(pattern), re.ASCII)  # RE2's \d, \s, \w are ASCII
    except re.error:
        return None


def _string_problems(schema: dict[str, Any], value: str, name: str) -> list[_Problem]:
    """maxLength, minLength, pattern: the first that fails, as kube-openapi stops there."""
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        return [_Problem("too_long", name, "", value, schema["maxLength"])]
    if "minLength" in schema and len(value) < schema["minLength"]:
        text = _in_body(name, f"should be at least {schema['minLength']} chars long")
        return [_Problem("value", name, text, value)]
    pattern = _compiled(schema["pattern"]) if "pattern" in schema else None
    if pattern is not None and not pattern.search(value):
        text = _in_body(name, f"should match '{schema['pattern']}'")
        return [_Problem("value", name, text, value)]
    return []


def _format_problems(schema: dict[str, Any], value: str, name: str) -> list[_Problem]:
    format_name = _format(schema)
    if not format_name or formats.conforms(format_name, value):
        return []
    text = _in_body(name, f"must be of type {format_name}: {gotext.quote(value)}")
    return [_Problem("type", name, text, value)]


def _bound(value: float, bound: float) -> float:
    """The bound as kube-openapi compares it: cut to an integer for an integer value."""
    return int(bound) if isinstance(value, int) else float(bound)


def _is_multiple(value: float, factor: float) -> bool:
    if isinstance(value, int):
        return value % int(factor) == 0 if int(factor) else False
    quotient = value * (1 / factor) if factor < 1 else value / factor
    return math.isclose(quotient, round(quotient), rel_tol=1e-9, abs_tol=0.0)


def _number_problems(schema: dict[str, Any], value: float, name: str) -> list[_Problem]:
    problems = []
    if "multipleOf" in schema and not _is_multiple(value, schema["multipleOf"]):
        factor = gotext.number(_bound(value, schema["multipleOf"]))
        problems.append(
            _Problem("value", name, _in_body(name, f"should be a multiple of {factor}"), value)
        )
    checks: tuple[tuple[str, str, Callable[[float, float], bool], str, str], ...] = (
        (
            "minimum",
            "exclusiveMinimum",
            lambda v, b: v < b,
            "greater than or equal to",
            "greater than",
        ),
        ("maximum", "exclusiveMaximum", lambda v, b: v > b, "less than or equal to", "less than"),
    )
    for key, exclusive_key, beyond, inclusive_words, exclusive_words in checks:
        if key not in schema:
            continue
        bound = _bound(value, schema[key])
        exclusive = bool(schema.get(exclusive_key))
        if beyond(value, bound) or (exclusive and value == bound):
            words = exclusive_words if exclusive else inclusive_words
            text = _in_body(name, f"should be {words} {gotext.number(bound)}")
            problems.append(_Problem("value", name, text, value))
    return problems


def _array_problems(schema: dict[str, Any], value: list[Any], name: str) -> list[_Problem]:
    problems: list[_Problem] = []
    items = schema.get("items")
    if isinstance(items, dict):
        for index, item in enumerate(value):
            problems += _problems(items, item, f"{name}[{index}]")
    if "minItems" in schema and len(value) < schema["minItems"]:
        text = _in_body(name, f"should have at least {schema['minItems']} items")
        problems.append(_Problem("value", name, text, len(value)))
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        problems.append(_Problem("too_many", name, "", len(value), schema["maxItems"]))
    if schema.get("uniqueItems"):
        seen = [gotext.json_text(item) for item in value]
        if len(set(seen)) != len(seen):
            problems.append(
                _Problem("value", name, _in_body(name, "shouldn't contain duplicates"), "")
            )
    return problems


def _same(value: Any, choice: Any) -> bool:
    if _is_number(value) and _is_number(choice):
        return bool(value == choice)
    return type(value) is type(choice) and gotext.json_text(value) == gotext.json_text(choice)


def _enum_problems(schema: dict[str, Any], value: Any, name: str) -> list[_Problem]:
    choices = schema.get("enum")
    if not choices or any(_same(value, choice) for choice in choices):
        return []
    return [_Problem("enum", name, "", value, choices)]


def _object_problems(schema: dict[str, Any], value: dict[str, Any], name: str) -> list[_Problem]:
    problems: list[_Problem] = []
    if "minProperties" in schema and len(value) < schema["minProperties"]:
        text = _in_body(name, f"should have at least {schema['minProperties']} properties")
        problems.append(_Problem("value", name, text, len(value)))
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        problems.append(_Problem("too_many", name, "", len(value), schema["maxProperties"]))
    properties: dict[str, Any] = schema.get("properties") or {}
    additional = schema.get("additionalProperties")
    if isinstance(additional, dict):
        for key, item in value.items():
            if key not in properties:
                problems += _problems(additional, item, f"{name}.{key}")
    for key, subschema in properties.items():
        if key in value:
            problems += _problems(subschema, value[key], f"{name}.{key}" if name else key)
    problems += [
        _Problem("required", f"{name}.{key}", "")
        for key in schema.get("required", ())
        if key not in value
    ]
    return problems


def _problems(schema: dict[str, Any], value: Any, name: str) -> list[_Problem]:
    """kube-openapi's `SchemaValidator.Validate`: its validators, in its order."""
    problems = _type_problems(schema, value, name)
    if value is None:
        return problems + _enum_problems(schema, value, name)
    problems += _composition_problems(schema, value, name)
    if isinstance(value, str):
        problems += _string_problems(schema, value, name) + _format_problems(schema, value, name)
    elif _is_number(value):
        problems += _number_problems(schema, value, name)
    elif isinstance(value, list):
        problems += _array_problems(schema, value, name)
    problems += _enum_problems(schema, value, name)
    if isinstance(value, dict):
        problems += _object_problems(schema, value, name)
    return problems


def _field_error(problem: _Problem, prefix: str) -> fields.FieldError:
    """`kubeOpenAPIResultToFieldErrors`: the field error kube-apiserver makes of a problem."""
    relative = problem.name.removeprefix(".")
    path = ".".join(filter(None, (prefix, relative))) or "<nil>"
    value = "" if problem.value is None else problem.value
    match problem.kind:
        case "composite":
            return fields.invalid(prefix or "<nil>", "", problem.message)
        case "required":
            return fields.required(path)
        case "enum":
            supported = [c if isinstance(c, str) else gotext.json_text(c) for c in problem.limit]
            return fields.not_supported(path, problem.value, supported)
        case "too_long":
            return fields.too_long(path, problem.limit)
        case "too_many":
            return fields.too_many(path, problem.value, problem.limit)
        case "type":
            return fields.type_invalid(path, value, problem.message)
        case _:
            return fields.invalid(path, value, problem.message)


def field_errors(schema: dict[str, Any], value: Any, prefix: str = "") -> list[fields.FieldError]:
    """The field errors of `value` against `schema`, named from `prefix` (`status`) if given."""
    return [_field_error(problem, prefix) for problem in _problems(schema, value, "")]
