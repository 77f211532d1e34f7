"""Field errors worded as apimachinery's `field` package words them (kube-apiserver 1.32).

A 422 `Status` lists one cause per field error: `reason` (the cause type), `field` (its
path) and `message` (the error body). The bodies follow `field.Error.ErrorBody`: the type's
words, the offending value as Go prints it (`gotext`), then the detail:

- `required`: `Required value` (the value is never shown);
- `invalid` / `type_invalid`: `Invalid value: "x": <detail>`;
- `not_supported`: `Unsupported value: "x": supported values: "a", "b"`;
- `too_long`: `Too long: may not be more than 253 bytes` (the value is never shown);
- `too_many`: `Too many: 1001: must have at most 1000 items` (a count, not the list).

A value is printed whole, as the API server prints it: nothing here truncates. Containers
(which kube-apiserver 1.32 prints with Go's `%#v`) are printed as JSON, as later versions do.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from tests.support.kube import gotext


class FieldError(NamedTuple):
    field: str
    message: str
    reason: str


def value_text(value: Any) -> str:
    """The bad value as `ErrorBody` prints it (`nil` is printed as the string "null")."""
    if value is None:
        return gotext.quote("null")
    if isinstance(value, str):
        return gotext.quote(value)
    if isinstance(value, bool | int | float):
        return gotext.number(value)
    return gotext.json_text(value)


def _with_detail(text: str, detail: str) -> str:
    return f"{text}: {detail}" if detail else text


def required(field: str, detail: str = "") -> FieldError:
    return FieldError(field, _with_detail("Required value", detail), "FieldValueRequired")


def invalid(field: str, value: Any, detail: str) -> FieldError:
    message = _with_detail(f"Invalid value: {value_text(value)}", detail)
    return FieldError(field, message, "FieldValueInvalid")


def type_invalid(field: str, value: Any, detail: str) -> FieldError:
    message = _with_detail(f"Invalid value: {value_text(value)}", detail)
    return FieldError(field, message, "FieldValueTypeInvalid")


def not_supported(field: str, value: Any, supported: Iterable[str]) -> FieldError:
    listed = ", ".join(gotext.quote(choice) for choice in supported)
    message = _with_detail(f"Unsupported value: {value_text(value)}", f"supported values: {listed}")
    return FieldError(field, message, "FieldValueNotSupported")


def too_long(field: str, limit: int) -> FieldError:
    detail = f"may not be more than {limit} bytes" if limit >= 0 else "value is too long"
    return FieldError(field, f"Too long: {detail}", "FieldValueTooLong")


def too_many(field: str, actual: int, limit: int) -> FieldError:
    detail = f"must have at most {limit} items" if limit >= 0 else "has too many items"
    return FieldError(field, f"Too many: {actual}: {detail}", "FieldValueTooMany")


def aggregate(errors: Iterable[FieldError]) -> str:
    """`ErrorList.ToAggregate().Error()`: one error alone, several distinct ones in brackets."""
    listed = list(dict.fromkeys(f"{error.field}: {error.message}" for error in errors))
    return listed[0] if len(listed) == 1 else f"[{', '.join(listed)}]"
