"""CustomResourceDefinitions: served types, structural pruning, defaults and schema validation.

kmock serves whatever resource it is told about and stores any JSON. A real API server
turns each served CRD version into an endpoint and, on every write of a custom resource,
does what apiextensions-apiserver's decoder and strategy do (1.32):

- prunes fields the `openAPIV3Schema` does not declare, and reports their paths, sorted
  (`spec.bogus`, `spec.tasks[0].extra`) for fieldValidation (`kube.decoding`);
- keeps undeclared fields under `x-kubernetes-preserve-unknown-fields: true`, and
  `apiVersion`, `kind`, `metadata` at the root and under `x-kubernetes-embedded-resource`;
- drops a `null` where the schema is not `nullable` and has no `default`, and fills schema
  `default`s for absent fields and for such `null`s (defaults inside defaults too);
- validates the result (`kube.crd_validation`) and refuses it with 422.

`x-kubernetes-int-or-string` allows an integer or a string. Not emulated: CEL rules
(`x-kubernetes-validations`), `x-kubernetes-list-type` / `map-type` semantics, conversion
between versions (every served version shares one stored object).
"""

from __future__ import annotations

import copy
from typing import Any

from tests.support.kube import crd_validation
from tests.support.kube.fields import FieldError
from tests.support.kube.resources import KubeObject, ResourceType

_PRESERVE = "x-kubernetes-preserve-unknown-fields"
_EMBEDDED = "x-kubernetes-embedded-resource"
_RESOURCE_FIELDS = ("apiVersion", "kind", "metadata")


def _child_path(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _is_dropped_null(value: Any, schema: Any) -> bool:
    """A `null` the decoder removes: its schema is neither nullable nor defaulted."""
    return (
        value is None
        and isinstance(schema, dict)
        and not schema.get("nullable")
        and "default" not in schema
    )


def _defaulted(schema: dict[str, Any]) -> Any:
    return _prune(copy.deepcopy(schema["default"]), schema, "", None)


def _prune_object(
    value: dict[str, Any], schema: dict[str, Any], path: str, unknown: list[str] | None
) -> dict[str, Any]:
    properties: dict[str, Any] = schema.get("properties") or {}
    additional = schema.get("additionalProperties")
    keeps_unknown = schema.get(_PRESERVE) or additional is True
    resource_fields = _RESOURCE_FIELDS if schema.get(_EMBEDDED) else ()
    result: dict[str, Any] = {}
    for key, item in value.items():
        subschema = properties.get(key, additional if isinstance(additional, dict) else None)
        if key in resource_fields:
            result[key] = item  # the metadata's own decoder deals with it
        elif subschema is not None:
            if not _is_dropped_null(item, subschema):
                result[key] = _prune(item, subschema, _child_path(path, key), unknown)
        elif keeps_unknown:
            result[key] = item
        elif unknown is not None:
            unknown.append(_child_path(path, key))
    for key, subschema in properties.items():
        absent = key not in result or (result[key] is None and not subschema.get("nullable"))
        if "default" in subschema and absent:
            result[key] = _defaulted(subschema)
    return result


def _prune(value: Any, schema: Any, path: str, unknown: list[str] | None) -> Any:
    """The value as the decoder leaves it; undeclared paths go to `unknown` (if a list)."""
    if not isinstance(schema, dict) or schema.get("x-kubernetes-int-or-string"):
        return value
    if isinstance(value, dict):
        return _prune_object(value, schema, path, unknown)
    items = schema.get("items")
    if isinstance(value, list) and isinstance(items, dict):
        return [
            _defaulted(items)
            if item is None and "default" in items and not items.get("nullable")
            else _prune(item, items, f"{path}[{index}]", unknown)
            for index, item in enumerate(value)
        ]
    return value


class CrdSchema:
    """One CRD version's `openAPIV3Schema`: prunes, defaults and validates objects."""

    def __init__(self, openapi_schema: dict[str, Any]) -> None:
        self._schema = openapi_schema
        self._root = {**openapi_schema, _EMBEDDED: True}  # the root is a resource, as in kube

    @property
    def openapi_schema(self) -> dict[str, Any]:
        return self._schema

    def prune(self, obj: KubeObject) -> KubeObject:
        pruned: KubeObject = _prune(obj, self._root, "", None)
        return pruned

    def unknown_fields(self, obj: KubeObject) -> list[str]:
        """The paths pruning removes from `obj`, sorted as kube-apiserver sorts them."""
        unknown: list[str] = []
        _prune(obj, self._root, "", unknown)
        return sorted(unknown)

    def violations(self, obj: KubeObject, *, status_only: bool = False) -> list[FieldError]:
        """Field errors in kube-apiserver's words (`kube.crd_validation`).

        A write to the `status` subresource checks `status` alone, against its schema.
        """
        if not status_only:
            return crd_validation.field_errors(self._schema, obj)
        status_schema = (self._schema.get("properties") or {}).get("status")
        if not isinstance(status_schema, dict) or "status" not in obj:
            return []
        return crd_validation.field_errors(status_schema, obj["status"], prefix="status")


def served_types(crd: KubeObject) -> list[ResourceType]:
    """One `ResourceType` per served version of the CRD."""
    spec = crd["spec"]
    names = spec["names"]
    types = []
    for version in spec.get("versions", []):
        if not version.get("served", True):
            continue
        openapi_schema = (version.get("schema") or {}).get("openAPIV3Schema")
        types.append(
            ResourceType(
                group=spec["group"],
                version=version["name"],
                plural=names["plural"],
                kind=names["kind"],
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                short_names=tuple(names.get("shortNames", ())),
                categories=tuple(names.get("categories", ())),
                has_status="status" in (version.get("subresources") or {}),
                custom=True,
                printer_columns=tuple(version.get("additionalPrinterColumns", ())),
                schema=CrdSchema(openapi_schema) if openapi_schema else None,
            )
        )
    return types


def established_status(crd: KubeObject, now: str) -> KubeObject:
    """The status the apiextensions server writes once a CRD's names are accepted."""
    conditions = [
        {
            "type": kind,
            "status": "True",
            "reason": reason,
            "message": message,
            "lastTransitionTime": now,
        }
        for kind, reason, message in (
            ("NamesAccepted", "NoConflicts", "no conflicts found"),
            ("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        )
    ]
    storage = [v["name"] for v in crd["spec"].get("versions", []) if v.get("storage")]
    return {
        "conditions": conditions,
        "acceptedNames": crd["spec"]["names"],
        "storedVersions": storage,
    }
