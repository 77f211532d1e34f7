"""The `Table` rendering (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`) used by kubectl.

kmock only serves plain JSON, so `kubectl get` can print no columns. For a custom resource,
the columns are the CRD's `additionalPrinterColumns` (their simple JSONPaths evaluated here:
`.a.b`, `.a[0].b`, `.a[?(@.type=="Ready")].status`); for other kinds, NAME and AGE only
(a real server has per-kind columns, e.g. READY/STATUS/RESTARTS for pods).
"""

from __future__ import annotations

import datetime
import re
from typing import Any

from tests.support.kube.resources import KubeObject, ResourceType

_PATH_TOKEN = re.compile(
    r"""\.([^.\[\]]+)|\[(\d+)\]|\[\?\(@\.([\w.-]+)\s*==\s*["']([^"']*)["']\)\]"""
)
_NAME_COLUMN = {
    "name": "Name",
    "type": "string",
    "format": "name",
    "priority": 0,
    "description": "Name",
}
_AGE_COLUMN = {
    "name": "Age",
    "type": "date",
    "jsonPath": ".metadata.creationTimestamp",
    "priority": 0,
}


def evaluate_json_path(obj: Any, path: str) -> Any:
    """The first value at a simple JSONPath, or None."""
    value = obj
    for match in _PATH_TOKEN.finditer(path.strip().strip("{}")):
        key, index, filter_key, filter_value = match.groups()
        if key is not None:
            value = value.get(key) if isinstance(value, dict) else None
        elif index is not None:
            value = (
                value[int(index)] if isinstance(value, list) and int(index) < len(value) else None
            )
        else:
            candidates = value if isinstance(value, list) else []
            value = next(
                (
                    item
                    for item in candidates
                    if evaluate_json_path(item, f".{filter_key}") == filter_value
                ),
                None,
            )
        if value is None:
            return None
    return value


def human_age(timestamp: str, now: datetime.datetime) -> str:
    """Like kubectl's short durations: 42s, 5m, 3h, 12d, 2y."""
    started = datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    seconds = max(0, int((now - started).total_seconds()))
    for unit, size in (("y", 365 * 86400), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * (2 if unit != "y" else 1):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _cell(obj: KubeObject, column: dict[str, Any], now: datetime.datetime) -> Any:
    if column.get("format") == "name" and "jsonPath" not in column:
        return obj["metadata"]["name"]
    value = evaluate_json_path(obj, column["jsonPath"])
    if value is not None and column.get("type") == "date":
        return human_age(str(value), now)
    return value


def render_table(
    rtype: ResourceType, objects: list[KubeObject], include_object: str, resource_version: str
) -> KubeObject:
    columns = [_NAME_COLUMN, *(rtype.printer_columns or [_AGE_COLUMN])]
    now = datetime.datetime.now(datetime.UTC)
    rows = []
    for obj in objects:
        row: dict[str, Any] = {"cells": [_cell(obj, column, now) for column in columns]}
        if include_object == "Object":
            row["object"] = obj
        elif include_object != "None":
            row["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj["metadata"],
            }
        rows.append(row)
    definitions = [
        {key: column.get(key, "") for key in ("name", "type", "format", "description", "priority")}
        | {"priority": column.get("priority", 0)}
        for column in columns
    ]
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": definitions,
        "rows": rows,
    }
