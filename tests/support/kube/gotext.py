"""Values printed the way kube-apiserver's Go code prints them in messages.

API errors quote the offending value with Go's `%q`, numbers with `%v`, and objects as Go's
`encoding/json` writes them; a test that asserts on a message (or a user who reads one)
sees these spellings, so the emulator writes them the same way:

- `quote`: `strconv.Quote`, e.g. `"a\\tb"`, `"\\x1b"`; printable non-ASCII stays as it is;
- `number`: `%v` of an int64 (`-1`) or a float64 (`0.5`, `200000`, `1e+06`, `1.5e-05`);
- `json_text`: `encoding/json` of an unstructured object: compact, keys sorted, `<`, `>`, `&`
  escaped as `\\u003c`, `\\u003e`, `\\u0026`.

Not reproduced: Go's `%q` escapes of non-printable non-ASCII runes (kept as they are here).
"""

from __future__ import annotations

import decimal
import json
from typing import Any

_GO_ESCAPES = {
    0x07: "\\a",
    0x08: "\\b",
    0x09: "\\t",
    0x0A: "\\n",
    0x0B: "\\v",
    0x0C: "\\f",
    0x0D: "\\r",
    0x22: '\\"',
    0x5C: "\\\\",
    0x7F: "\\x7f",
}
_QUOTE_TABLE = {code: f"\\x{code:02x}" for code in range(0x20)} | _GO_ESCAPES
_HTML_ESCAPES = {ord("<"): "\\u003c", ord(">"): "\\u003e", ord("&"): "\\u0026"}
_SHORTEST_EXPONENT_LIMIT = 6  # %v switches to %e at exponents < -4 or >= 6


def quote(text: str) -> str:
    """Go's `strconv.Quote` (`%q`)."""
    return f'"{text.translate(_QUOTE_TABLE)}"'


def _float(value: float) -> str:
    """Go's `%v` of a float64: the shortest digits, as `%e` for exponents < -4 or >= 6."""
    if value == 0:
        return "0"
    sign, digits, exponent = decimal.Decimal(repr(value)).normalize().as_tuple()
    assert isinstance(exponent, int)  # finite: JSON has no NaN or infinity
    text = "".join(map(str, digits))
    point = len(text) + exponent  # where the decimal point goes in the digits
    power = point - 1
    prefix = "-" if sign else ""
    if power < -4 or power >= _SHORTEST_EXPONENT_LIMIT:
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        return f"{prefix}{mantissa}e{'-' if power < 0 else '+'}{abs(power):02d}"
    if point <= 0:
        return f"{prefix}0.{'0' * -point}{text}"
    if point >= len(text):
        return f"{prefix}{text}{'0' * (point - len(text))}"
    return f"{prefix}{text[:point]}.{text[point:]}"


def number(value: float) -> str:
    """Go's `%v` of a JSON number: an int64 as decimal digits, a float64 as Go prints it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if isinstance(value, int) else _float(value)


def json_text(value: Any) -> str:
    """Go's `encoding/json` of an unstructured value (maps sort their keys)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return text.translate(_HTML_ESCAPES)
