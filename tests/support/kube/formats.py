"""String formats a CRD schema may name, checked as kube-apiserver checks them.

apiextensions-apiserver keeps a schema's `format` only if it is one of its supported formats
(k8s.io/apiextensions-apiserver/pkg/apiserver/validation/formats.go); others (`int32`,
`int64`, `float`, made-up names) are dropped and check nothing. A kept format is checked by
kube-openapi's `strfmt` registry on string values only, and a failure reads `spec.cidr in
body must be of type cidr: "not-a-cidr"`. Format names are compared without dashes, so
`date-time` is `datetime`.

Checked here, with the rules of the Go functions kube-openapi uses:

- `cidr` (`net.ParseCIDR`, leading zeros allowed in IPv4 octets, host bits allowed), `ipv4`
  (an IP written with dots, leading zeros allowed), `ipv6` (an IP written with colons);
- `hostname` (kube-openapi's pattern: labels of letters, digits, symbols and `-`, 63 at most,
  255 in all, a last label of two or more letters), `uri` (`url.ParseRequestURI`: a scheme
  or a leading `/`, a valid host and port, valid `%` escapes), `email` (an address, with
  an optional display name);
- `uuid`, `uuid3`, `uuid4`, `uuid5`, `bsonobjectid` (24 hex digits), `mac` (6, 8 or 20
  octets in `:`, `-` or `.` notation), `byte` (padded base64), `hexcolor`, `rgbcolor`, `ssn`;
- `date` (`2006-01-02`, a real calendar day), `datetime` (kube-openapi's own check: a date,
  `T`, `hh:mm:ss`, optional fraction, `Z` or an offset), `duration` (Go's
  `time.ParseDuration`, or the Scala-like `3 days`), `password` (anything).

Not checked: `isbn`, `isbn10`, `isbn13`, `creditcard` (accepted as any string). `email` is
approximate: Go's `net/mail` accepts more quoted and commented forms than this does.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
import unicodedata
from collections.abc import Callable

_ASCII = re.ASCII | re.IGNORECASE


def _matches(pattern: str, flags: int = re.ASCII) -> Callable[[str], bool]:
    """Go's `regexp.MatchString` of a `^...$` pattern (`$` is the very end, as in Go)."""
    compiled = re.compile(pattern.removesuffix("$") + r"\Z", flags)
    return lambda text: compiled.search(text) is not None


def _ipv4_octets(text: str) -> str | None:
    """A dotted IPv4 address without leading zeros (Go's sloppy parser allows them)."""
    parts = text.split(".")
    if len(parts) != 4 or not all(part.isascii() and part.isdigit() for part in parts):
        return None
    octets = [int(part) for part in parts]
    return ".".join(map(str, octets)) if all(octet <= 255 for octet in octets) else None


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if "%" in text:  # zones are not IPs to Go
        return None
    if ":" not in text:
        normalized = _ipv4_octets(text)
        return ipaddress.IPv4Address(normalized) if normalized else None
    try:
        return ipaddress.IPv6Address(text)
    except ValueError:
        return None


def _is_cidr(text: str) -> bool:
    address, slash, prefix = text.partition("/")
    if not slash or not prefix.isascii() or not prefix.isdigit() or _ip(address) is None:
        return False
    return int(prefix) <= (128 if ":" in address else 32)


def _is_ipv4(text: str) -> bool:
    return "." in text and _ip(text) is not None


def _is_ipv6(text: str) -> bool:
    return ":" in text and _ip(text) is not None


_HOSTNAME = re.compile(
    r"^([a-zA-Z0-9]((-?[a-zA-Z0-9]{0,62})?)|([a-zA-Z0-9](([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)(\.)){1,}"
    r"([a-zA-Z]){2,63})\Z"
)


def _as_ascii_class(char: str) -> str:
    """Letters (`\\p{L}`) become `a`, symbols (`\\p{S}`) `0`: what the pattern allows each."""
    if char.isascii() and (char.isalnum() or char in "-."):
        return char
    category = unicodedata.category(char)
    return "a" if category.startswith("L") else "0" if category.startswith("S") else " "


def _is_hostname(text: str) -> bool:
    if len(text) > 255 or any(len(label) > 63 for label in text.split(".")):
        return False
    return _HOSTNAME.match("".join(map(_as_ascii_class, text))) is not None


_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):(.*)", re.DOTALL)
_HOST_CHARS = re.compile(r"""[A-Za-z0-9\-._~!$&'()*+,;=:\[\]<>"%\x80-\U0010ffff]*""")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def _is_request_uri(text: str) -> bool:
    if not text or any(ord(char) < 0x20 or ord(char) == 0x7F for char in text):
        return False
    if text == "*":
        return True
    scheme_match = _SCHEME.fullmatch(text)
    if text.startswith(":"):
        return False
    scheme, rest = (scheme_match[1], scheme_match[2]) if scheme_match else ("", text)
    rest = rest.partition("?")[0]
    if not rest.startswith("/"):
        return bool(scheme)  # a rootless path after a scheme is opaque, anything goes
    if scheme and rest.startswith("//"):
        authority, _, path = rest[2:].partition("/")
        host = authority.rpartition("@")[2]
        port = host.rpartition(":")[2] if host.rfind(":") > host.rfind("]") else ""
        if not _HOST_CHARS.fullmatch(host) or (port and not port.isdigit()):
            return False
        rest = "/" + path
    return _BAD_ESCAPE.search(rest) is None


def _is_email(text: str) -> bool:
    address = text.strip()
    if address.endswith(">"):
        address = address.rpartition("<")[2][:-1]
    local, at, domain = address.partition("@")
    return bool(at and local and domain) and not re.search(r"[\s<>@]", local + domain)


def _is_date(text: str) -> bool:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text, re.ASCII):
        return False
    try:
        datetime.date.fromisoformat(text)
    except ValueError:
        return False
    return True


_CLOCK = re.compile(r"^([0-9]{2}):([0-9]{2}):([0-9]{2})(.[0-9]+)?(z|([+-][0-9]{2}:[0-9]{2}))\Z")


def _is_datetime(text: str) -> bool:
    """kube-openapi's `IsDateTime`, quirks included (it splits the lower-cased text on `t`)."""
    parts = text.lower().split("t")
    if len(text) < 4 or len(parts) < 2 or not _is_date(parts[0]):
        return False
    clock = _CLOCK.search(parts[1])
    return clock is not None and clock[1] <= "23" and clock[2] <= "59" and clock[3] <= "59"


_GO_DURATION = re.compile(r"[-+]?(?:0|(?:(?:\d+\.?\d*|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+)", re.ASCII)
_SCALA_DURATION = re.compile(r"(\d+)\s*([A-Za-zµ]+)")
_SCALA_UNITS = (
    ("ns", "nano"),
    ("us", "µs", "micro"),
    ("ms", "milli"),
    ("s", "sec"),
    ("m", "min"),
    ("h", "hr", "hour"),
    ("d", "day"),
    ("w", "wk", "week"),
)


def _is_scala_unit(unit: str) -> bool:
    unit = unit.lower()
    return any(
        unit == variant or (index == len(variants) - 1 and unit.startswith(variant))
        for variants in _SCALA_UNITS
        for index, variant in enumerate(variants)
    )


def _is_duration(text: str) -> bool:
    if _GO_DURATION.fullmatch(text):
        return True
    return any(_is_scala_unit(unit) for _, unit in _SCALA_DURATION.findall(text))


_MAC = (
    r"^(?:[0-9a-f]{2}(?::[0-9a-f]{2}){5}|[0-9a-f]{2}(?::[0-9a-f]{2}){7}"
    r"|[0-9a-f]{2}(?::[0-9a-f]{2}){19}|[0-9a-f]{2}(?:-[0-9a-f]{2}){5}"
    r"|[0-9a-f]{2}(?:-[0-9a-f]{2}){7}|[0-9a-f]{2}(?:-[0-9a-f]{2}){19}"
    r"|[0-9a-f]{4}(?:\.[0-9a-f]{4}){2}|[0-9a-f]{4}(?:\.[0-9a-f]{4}){3}"
    r"|[0-9a-f]{4}(?:\.[0-9a-f]{4}){9})$"
)
_is_ssn = _matches(r"^\d{3}[- ]?\d{2}[- ]?\d{4}$")
_RGB_PART = r"\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*"

_CHECKS: dict[str, Callable[[str], bool]] = {
    "bsonobjectid": _matches(r"^[0-9a-f]{24}$", _ASCII),
    "uri": _is_request_uri,
    "email": _is_email,
    "hostname": _is_hostname,
    "ipv4": _is_ipv4,
    "ipv6": _is_ipv6,
    "cidr": _is_cidr,
    "mac": _matches(_MAC, _ASCII),
    "uuid": _matches(r"^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$", _ASCII),
    "uuid3": _matches(
        r"^[0-9a-f]{8}-?[0-9a-f]{4}-?3[0-9a-f]{3}-?[0-9a-f]{4}-?[0-9a-f]{12}$", _ASCII
    ),
    "uuid4": _matches(
        r"^[0-9a-f]{8}-?[0-9a-f]{4}-?4[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$", _ASCII
    ),
    "uuid5": _matches(
        r"^[0-9a-f]{8}-?[0-9a-f]{4}-?5[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$", _ASCII
    ),
    "ssn": lambda text: len(text) == 11 and _is_ssn(text),
    "hexcolor": _matches(r"^#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$"),
    "rgbcolor": _matches(rf"^rgb\({_RGB_PART},{_RGB_PART},{_RGB_PART}\)$"),
    "byte": _matches(
        r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{4})$"
    ),
    "password": lambda text: True,
    "date": _is_date,
    "datetime": _is_datetime,
    "duration": _is_duration,
}
_UNCHECKED = frozenset({"isbn", "isbn10", "isbn13", "creditcard"})


def supported(name: str) -> bool:
    """Whether apiextensions keeps this format (and so kube-openapi checks it)."""
    normalized = name.replace("-", "")
    return normalized in _CHECKS or normalized in _UNCHECKED


def conforms(name: str, text: str) -> bool:
    """Whether a string value is valid in a supported format."""
    check = _CHECKS.get(name.replace("-", ""))
    return check is None or check(text)
