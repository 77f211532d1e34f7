"""PATCH bodies applied by content type, as the API server does.

kmock merges every patch as a plain recursive dict update, so `null` never deletes a key,
JSON Patch (a list of operations) is not understood, and strategic merge is not distinguished.

- `application/merge-patch+json`: RFC 7386 (`null` deletes, lists replace).
- `application/strategic-merge-patch+json`: built-in kinds only (custom resources get 415, as on
  a real cluster); applied as a merge patch after dropping the `$`-prefixed directives
  (`$setElementOrder/...`, `$retainKeys`, `$patch`), so lists replace rather than merge by key.
- `application/json-patch+json`: RFC 6902, via the `jsonpatch` library.
- `application/apply-patch+yaml` (server-side apply): 415, not emulated.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch

from tests.support.kube.errors import bad_request, unsupported_media_type
from tests.support.kube.resources import KubeObject, ResourceType

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, `null` removes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _without_directives(patch: Any) -> Any:
    if isinstance(patch, dict):
        return {
            key: _without_directives(value)
            for key, value in patch.items()
            if not key.startswith("$")
        }
    if isinstance(patch, list):
        return [_without_directives(item) for item in patch]
    return patch


def media_type(content_type: str) -> str:
    """`application/merge-patch+json; charset=utf-8` → `application/merge-patch+json`."""
    return content_type.split(";")[0].strip().lower()


def apply_patch(
    rtype: ResourceType, content_type: str, current: KubeObject, patch: Any
) -> KubeObject:
    patch_type = media_type(content_type)
    if patch_type == JSON_PATCH:
        if not isinstance(patch, list):
            raise bad_request("json patch must be a list of operations")
        try:
            patched: KubeObject = jsonpatch.apply_patch(current, patch)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
            raise bad_request(
                f"the server rejected our request due to an error in our request: {exc}"
            ) from exc
        return patched
    if not isinstance(patch, dict):
        raise bad_request("a merge patch must be a JSON object")
    if patch_type == MERGE_PATCH:
        return dict(merge_patch(current, patch))
    if patch_type == STRATEGIC_MERGE_PATCH and not rtype.custom:
        return dict(merge_patch(current, _without_directives(patch)))
    raise unsupported_media_type(content_type)
