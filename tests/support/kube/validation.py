"""The checks kube-apiserver applies to objects of every kind, beyond any CRD schema.

An emulator that stores what a real API server refuses lets bugs through to the first real
cluster: a Job named after a user's input, a label copied from a prompt, a ConfigMap holding
a long LLM output. These checks refuse the same objects with 422 and kube-apiserver's own
messages, word for word, so a test can assert on what a user would read:

- `metadata.name`: a DNS-1123 subdomain (253 characters), a DNS-1123 label (63) for
  namespaces, a DNS-1035 label for services (they start with a letter), and for RBAC objects
  only "not `.` or `..`, no `/` or `%`" (so `troupe:operator` is fine);
- label keys (qualified names with an optional DNS prefix) and values (63 characters,
  alphanumerics with `-_.` inside); annotation keys, and annotations totalling 256 KiB
  (`metadata.annotations: Too long: may not be more than 262144 bytes`);
- the keys of ConfigMap `data` / `binaryData` and Secret `data` (Secret `stringData` is
  merged into `data` first): `[-._a-zA-Z0-9]+`, 253 characters at most, not `.`, `..` or
  `..`-prefixed (`data[a b]: Invalid value: "a b": a valid config key must consist of
  alphanumeric characters, ...`), and no key in both `data` and `binaryData` (`data[k]:
  Invalid value: "k": duplicate of key present in binaryData`);
- ConfigMap `data` + `binaryData` and Secret `data` totalling 1 MiB (`[]: Too long: may
  not be more than 1048576 bytes` and `data: Too long: ...`).

Words are kube-apiserver 1.32's (`k8s.io/kubernetes/pkg/apis/core/validation`,
`k8s.io/apimachinery/pkg/util/validation`); 1.31 and older said `must have at most N bytes`.
Keys are checked in sorted order (Go's map order is random).

Not checked: the per-kind field rules of built-in kinds (a Pod without containers is
stored), immutability of fields, and `generateName` itself (only the generated name).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterable

from tests.support.kube.errors import bad_request
from tests.support.kube.fields import FieldError, invalid, too_long
from tests.support.kube.resources import KubeObject, ResourceType

MAX_DATA_BYTES = 1024 * 1024
MAX_ANNOTATION_BYTES = 256 * 1024
_LABEL_VALUE_MAX = 63
_QUALIFIED_NAME_MAX = 63
_DNS_LABEL_MAX = 63
_DNS_SUBDOMAIN_MAX = 253

_DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN_FMT = _DNS1123_LABEL_FMT + "(\\." + _DNS1123_LABEL_FMT + ")*"
_DNS1035_LABEL_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
_QUALIFIED_NAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE_FMT = "(" + _QUALIFIED_NAME_FMT + ")?"
_CONFIG_MAP_KEY_FMT = "[-._a-zA-Z0-9]+"

_DNS1123_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-',"
    " and must start and end with an alphanumeric character"
)
_DNS1123_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-'"
    " or '.', and must start and end with an alphanumeric character"
)
_DNS1035_LABEL_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an"
    " alphabetic character, and end with an alphanumeric character"
)
_QUALIFIED_NAME_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an"
    " alphanumeric character"
)
_LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or"
    " '.', and must start and end with an alphanumeric character"
)

_CONFIG_MAP_KEY_MSG = "a valid config key must consist of alphanumeric characters, '-', '_' or '.'"

_RBAC_GROUP = "rbac.authorization.k8s.io"
_CONFIGMAPS = ("", "configmaps")
_SECRETS = ("", "secrets")


def _full_match(pattern: str) -> Callable[[str], bool]:
    compiled = re.compile(pattern)
    return lambda value: compiled.fullmatch(value) is not None


_is_dns1123_label = _full_match(_DNS1123_LABEL_FMT)
_is_dns1123_subdomain = _full_match(_DNS1123_SUBDOMAIN_FMT)
_is_dns1035_label = _full_match(_DNS1035_LABEL_FMT)
_is_qualified_name = _full_match(_QUALIFIED_NAME_FMT)
_is_label_value = _full_match(_LABEL_VALUE_FMT)
_is_config_map_key = _full_match(_CONFIG_MAP_KEY_FMT)


def _regex_error(message: str, pattern: str, *examples: str) -> str:
    """apimachinery's `RegexError`, double spaces included."""
    shown = " or ".join(f"'{example}', " for example in examples)
    return f"{message} (e.g. {shown}regex used for validation is '{pattern}')"


def _too_long(limit: int) -> str:
    return f"must be no more than {limit} characters"


def dns1123_subdomain(value: str) -> list[str]:
    problems = [_too_long(_DNS_SUBDOMAIN_MAX)] if len(value) > _DNS_SUBDOMAIN_MAX else []
    if not _is_dns1123_subdomain(value):
        problems.append(_regex_error(_DNS1123_SUBDOMAIN_MSG, _DNS1123_SUBDOMAIN_FMT, "example.com"))
    return problems


def dns1123_label(value: str) -> list[str]:
    problems = [_too_long(_DNS_LABEL_MAX)] if len(value) > _DNS_LABEL_MAX else []
    if _is_dns1123_label(value):
        return problems
    if _is_dns1123_subdomain(value):
        return [*problems, "must not contain dots"]
    return [*problems, _regex_error(_DNS1123_LABEL_MSG, _DNS1123_LABEL_FMT, "my-name", "123-abc")]


def dns1035_label(value: str) -> list[str]:
    problems = [_too_long(_DNS_LABEL_MAX)] if len(value) > _DNS_LABEL_MAX else []
    if not _is_dns1035_label(value):
        problems.append(_regex_error(_DNS1035_LABEL_MSG, _DNS1035_LABEL_FMT, "my-name", "abc-123"))
    return problems


def path_segment_name(value: str) -> list[str]:
    if value in {".", ".."}:
        return [f"may not be '{value}'"]
    return [f"may not contain '{bad}'" for bad in ("/", "%") if bad in value]


def qualified_name(value: str) -> list[str]:
    """Label and annotation keys: `name` or `dns.prefix/name`."""
    parts = value.split("/")
    if len(parts) > 2:
        return [
            "a qualified name "
            + _regex_error(_QUALIFIED_NAME_MSG, _QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    problems = []
    if len(parts) == 2:
        prefix = parts[0]
        prefix_problems = ["must be non-empty"] if not prefix else dns1123_subdomain(prefix)
        problems += [f"prefix part {problem}" for problem in prefix_problems]
    name = parts[-1]
    if not name:
        problems.append("name part must be non-empty")
    elif len(name) > _QUALIFIED_NAME_MAX:
        problems.append(f"name part {_too_long(_QUALIFIED_NAME_MAX)}")
    if not _is_qualified_name(name):
        problems.append(
            "name part "
            + _regex_error(_QUALIFIED_NAME_MSG, _QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc")
        )
    return problems


def label_value(value: str) -> list[str]:
    problems = [_too_long(_LABEL_VALUE_MAX)] if len(value) > _LABEL_VALUE_MAX else []
    if not _is_label_value(value):
        problems.append(
            _regex_error(_LABEL_VALUE_MSG, _LABEL_VALUE_FMT, "MyValue", "my_value", "12345")
        )
    return problems


def config_map_key(value: str) -> list[str]:
    """`IsConfigMapKey`: keys of ConfigMap `data` / `binaryData` and Secret `data`."""
    problems = [_too_long(_DNS_SUBDOMAIN_MAX)] if len(value) > _DNS_SUBDOMAIN_MAX else []
    if not _is_config_map_key(value):
        problems.append(
            _regex_error(
                _CONFIG_MAP_KEY_MSG, _CONFIG_MAP_KEY_FMT, "key.name", "KEY_NAME", "key-name"
            )
        )
    if value in {".", ".."}:
        problems.append(f"must not be '{value}'")
    elif value.startswith(".."):
        problems.append("must not start with '..'")
    return problems


def _name_rule(rtype: ResourceType) -> Callable[[str], list[str]]:
    if rtype.group == _RBAC_GROUP:
        return path_segment_name
    if rtype.key == ("", "namespaces"):
        return dns1123_label
    if rtype.key == ("", "services"):
        return dns1035_label
    return dns1123_subdomain


def _decoded_size(encoded: str) -> int:
    try:
        return len(base64.b64decode(encoded, validate=True))
    except (binascii.Error, ValueError) as exc:
        raise bad_request(f"illegal base64 data: {exc}") from exc


def _metadata_violations(rtype: ResourceType, metadata: KubeObject) -> list[FieldError]:
    causes = []
    name = metadata.get("name") or ""
    causes += [invalid("metadata.name", name, p) for p in _name_rule(rtype)(name)]
    for key, value in (metadata.get("labels") or {}).items():
        causes += [invalid("metadata.labels", key, p) for p in qualified_name(key)]
        causes += [invalid("metadata.labels", value, p) for p in label_value(value)]
    annotations: dict[str, str] = metadata.get("annotations") or {}
    for key in annotations:
        causes += [invalid("metadata.annotations", key, p) for p in qualified_name(key.lower())]
    if sum(len(key) + len(value) for key, value in annotations.items()) > MAX_ANNOTATION_BYTES:
        causes.append(too_long("metadata.annotations", MAX_ANNOTATION_BYTES))
    return causes


def _key_violations(bag: str, keys: Iterable[str]) -> list[FieldError]:
    return [invalid(f"{bag}[{key}]", key, p) for key in sorted(keys) for p in config_map_key(key)]


def _data_violations(rtype: ResourceType, obj: KubeObject) -> list[FieldError]:
    data: dict[str, str] = obj.get("data") or {}
    if rtype.key == _CONFIGMAPS:
        binary: dict[str, str] = obj.get("binaryData") or {}
        causes = _key_violations("data", data) + [
            invalid(f"data[{key}]", key, "duplicate of key present in binaryData")
            for key in sorted(data.keys() & binary.keys())
        ]
        causes += _key_violations("binaryData", binary)
        size = sum(len(value.encode()) for value in data.values())
        size += sum(_decoded_size(value) for value in binary.values())
        return causes + ([too_long("[]", MAX_DATA_BYTES)] if size > MAX_DATA_BYTES else [])
    if rtype.key == _SECRETS:
        size = sum(_decoded_size(value) for value in data.values())
        too_big = [too_long("data", MAX_DATA_BYTES)] if size > MAX_DATA_BYTES else []
        return _key_violations("data", data) + too_big
    return []


def violations(rtype: ResourceType, obj: KubeObject) -> list[FieldError]:
    """The field errors kube-apiserver would report for this object, in its words."""
    return _metadata_violations(rtype, obj.get("metadata") or {}) + _data_violations(rtype, obj)
