"""CustomResourceDefinitions: served types, structural pruning, defaults and schema validation.

kmock serves whatever resource it is told about and stores any JSON. A real API server
turns each served CRD version into an endpoint, prunes fields the `openAPIV3Schema` does not
declare, fills schema `default`s, and rejects invalid objects with 422. This module does the
same with `jsonschema` (Draft 4 is the dialect OpenAPI v3.0 schemas follow):

- `nullable: true` allows `null`; `x-kubernetes-int-or-string` allows an integer or a string;
- `x-kubernetes-preserve-unknown-fields: true` keeps undeclared fields at that level;
- `x-kubernetes-embedded-resource` and CEL rules (`x-kubernetes-validations`) are ignored;
- `metadata` is neither pruned nor validated beyond what the schema declares.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonschema

from tests.support.kube.resources import KubeObject, ResourceType

_PRESERVE = "x-kubernetes-preserve-unknown-fields"
_ALWAYS_KEPT = ("apiVersion", "kind", "metadata")


def _as_jsonschema(schema: Any) -> Any:
    """Translate the OpenAPI/Kubernetes extensions into plain JSON Schema keywords."""
    if isinstance(schema, list):
        return [_as_jsonschema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    converted = {key: _as_jsonschema(value) for key, value in schema.items() if key != "nullable"}
    if schema.get("x-kubernetes-int-or-string"):
        converted.pop("type", None)
        converted["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if schema.get("nullable") and "type" in converted:
        converted = {"anyOf": [{"type": "null"}, converted]}
    return converted


def _prune(value: Any, schema: dict[str, Any]) -> Any:
    if isinstance(value, list):
        items = schema.get("items")
        return [_prune(item, items) for item in value] if isinstance(items, dict) else value
    if not isinstance(value, dict) or schema.get("x-kubernetes-int-or-string"):
        return value
    properties: dict[str, Any] = schema.get("properties") or {}
    additional = schema.get("additionalProperties")
    result: dict[str, Any] = {}
    for key, item in value.items():
        if key in properties:
            result[key] = _prune(item, properties[key])
        elif isinstance(additional, dict):
            result[key] = _prune(item, additional)
        elif schema.get(_PRESERVE) or additional is True:
            result[key] = item
    for key, subschema in properties.items():
        if key not in result and "default" in subschema:
            result[key] = _prune(copy.deepcopy(subschema["default"]), subschema)
    return result


def _field_path(parts: list[str | int]) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in parts).lstrip(
        "."
    )


class CrdSchema:
    """One CRD version's `openAPIV3Schema`: prunes, defaults and validates objects."""

    def __init__(self, openapi_schema: dict[str, Any]) -> None:
        self._schema = openapi_schema
        self._validator = jsonschema.Draft4Validator(_as_jsonschema(openapi_schema))

    def prune(self, obj: KubeObject) -> KubeObject:
        pruned: KubeObject = _prune(
            {k: v for k, v in obj.items() if k not in _ALWAYS_KEPT}, self._schema
        )
        pruned.update({key: obj[key] for key in _ALWAYS_KEPT if key in obj})
        return pruned

    def violations(self, obj: KubeObject) -> list[tuple[str, str]]:
        """`(field path, message)` pairs worded like the API server's field errors."""
        causes: list[tuple[str, str]] = []
        for error in sorted(
            self._validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path))
        ):
            path = list(error.absolute_path)
            if error.validator == "required":
                for missing in error.validator_value:
                    if isinstance(error.instance, dict) and missing not in error.instance:
                        causes.append((_field_path([*path, missing]), "Required value"))
            else:
                causes.append(
                    (_field_path(path), f"Invalid value: {error.instance!r}: {error.message}")
                )
        return causes


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
