"""The decoding step of create, update and patch: readable JSON, and fieldValidation.

Before anything is stored, kube-apiserver decodes the request body into the resource's type
(k8s.io/apiserver/pkg/endpoints/handlers/{create,update,patch}.go, 1.32). The emulator does
what that step does, in its words:

- the `fieldValidation` query parameter is `Ignore`, `Warn` or `Strict`, and `Warn` when
  absent; another value is 422 `CreateOptions.meta.k8s.io "" is invalid: fieldValidation:
  Unsupported value: "Bogus": supported values: "", "Ignore", "Strict", "Warn"` (`UpdateOptions`,
  `PatchOptions` for PUT and PATCH);
- an unreadable body is 400: `the object provided is unrecognized (must be of type
  ConfigMap): couldn't get version/kind; json parse error: <error> (<first 30 bytes> ...)` for
  create and update, `error decoding patch: <error>` for a patch (`Invalid JSON Patch` for a
  merge patch under `Ignore`); bodies nested too deep are read by `kube.bodies`;
- strict decoding errors, under `Warn` and `Strict` only: fields repeated in one object
  (`duplicate field "data.a"`), fields of `metadata` that ObjectMeta does not have
  (`unknown field "metadata.bogus"`, any kind), and fields a CRD schema prunes (`unknown field
  "spec.bogus"`, custom resources), in that order;
- `Strict` refuses them: 400 `Widget in version "v1" cannot be handled as a Widget: strict
  decoding error: unknown field "spec.bogus", unknown field "spec.other"` for create and
  update; 422 ` "" is invalid: patch: Invalid value: "<the patched object as JSON>": strict
  decoding error: ...` for a patch (kind and name empty: kube-apiserver leaves them so);
- `Warn` stores the object, pruned, and answers with one `Warning: 299 - "unknown field
  \\"spec.bogus\\""` header per error (`kube.warnings`); `Ignore` prunes silently.

Unknown `metadata` fields are dropped from every stored object, as decoding into ObjectMeta
drops them. Not known here: the fields of built-in kinds (no schemas; `spec.bogus` in a Pod
is stored), the Go spelling of syntax errors (Python's is used), and for a strategic merge
patch the value kube-apiserver shows (`%+v` of the patch; the patched object here).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import kmock

from tests.support.kube import fields, gotext, warnings
from tests.support.kube.bodies import BeyondEmulator, Body, BodyError, parse
from tests.support.kube.errors import bad_request, invalid_kind
from tests.support.kube.patches import JSON_PATCH, MERGE_PATCH
from tests.support.kube.resources import KubeObject, ResourceType

_DIRECTIVES = ("", "Ignore", "Strict", "Warn")
_OBJECT_META_FIELDS = frozenset(
    {
        "name",
        "generateName",
        "namespace",
        "selfLink",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "labels",
        "annotations",
        "ownerReferences",
        "finalizers",
        "managedFields",
    }
)
_OWNER_REFERENCE_FIELDS = frozenset(
    {"apiVersion", "kind", "name", "uid", "controller", "blockOwnerDeletion"}
)
_JSON_PATCH_OPERATION_FIELDS = frozenset({"op", "path", "from", "value"})
_GO_TYPES = {list: "array", str: "string", int: "number", float: "number", bool: "bool"}
_FIND_KIND = (
    'struct { APIVersion string "json:\\"apiVersion,omitempty\\""; Kind string'
    ' "json:\\"kind,omitempty\\"" }'
)
_SUMMARY_BYTES = 30


def _known_keys(
    obj: dict[str, Any], known: frozenset[str], path: str, unknown: list[str]
) -> dict[str, Any]:
    unknown += [f"{path}.{key}" for key in obj if key not in known]
    return {key: value for key, value in obj.items() if key in known}


def known_metadata(obj: KubeObject) -> tuple[KubeObject, list[str]]:
    """The object with only ObjectMeta's fields in `metadata`, and the paths of the others."""
    metadata = obj.get("metadata")
    unknown: list[str] = []
    if not isinstance(metadata, dict):
        return obj, unknown
    kept = _known_keys(metadata, _OBJECT_META_FIELDS, "metadata", unknown)
    owners = kept.get("ownerReferences")
    if isinstance(owners, list):
        kept["ownerReferences"] = [
            _known_keys(owner, _OWNER_REFERENCE_FIELDS, f"metadata.ownerReferences[{i}]", unknown)
            if isinstance(owner, dict)
            else owner
            for i, owner in enumerate(owners)
        ]
    return ({**obj, "metadata": kept} if unknown else obj), unknown


def _summary(raw: bytes) -> str:
    """`summarizeData(body, 30)`: the start of a JSON object, or of anything else in hex."""
    if not raw:
        return "<empty>"
    head, more = raw[:_SUMMARY_BYTES], " ..." if len(raw) > _SUMMARY_BYTES else ""
    return (head.decode(errors="replace") if raw.startswith(b"{") else head.hex()) + more


def _strict_error(errors: list[str]) -> str:
    return "strict decoding error: " + ", ".join(errors)


@dataclass(frozen=True)
class Decoder:
    """How one request's body is decoded into `rtype` (see the module docstring)."""

    rtype: ResourceType
    directive: str

    @classmethod
    def of(cls, rtype: ResourceType, query: Mapping[str, str], options_kind: str) -> Decoder:
        value = query.get("fieldValidation", "")
        if value not in _DIRECTIVES:
            cause = fields.not_supported("fieldValidation", value, _DIRECTIVES)
            raise invalid_kind("meta.k8s.io", options_kind, "", [cause])
        return cls(rtype, value or "Warn")

    @property
    def strict(self) -> bool:
        return self.directive != "Ignore"

    def object(self, raw: bytes) -> KubeObject:
        """The body of a create or update, after fieldValidation had its say."""
        kind = self.rtype.kind
        try:
            body = parse(raw)
        except BeyondEmulator as exc:
            raise bad_request(str(exc)) from exc
        except BodyError as exc:
            raise self._unrecognized(raw, str(exc)) from exc
        if not isinstance(body.value, dict):
            go_type = _GO_TYPES.get(type(body.value), "null")
            message = f"json: cannot unmarshal {go_type} into Go value of type {_FIND_KIND}"
            raise self._unrecognized(raw, message)
        obj: KubeObject = body.value
        if not self.strict:
            return obj
        body_kind = obj.get("kind") or kind
        version = str(obj.get("apiVersion") or self.rtype.api_version).rpartition("/")[2]
        prefix = f'{body_kind} in version "{version}" cannot be handled as a {kind}: '
        self._settle(
            [f'duplicate field "{path}"' for path in body.duplicates] + self._unknown(obj),
            lambda message: bad_request(prefix + message),
        )
        return obj

    def patch(self, raw: bytes, media_type: str) -> Body:
        """A patch body; its own strict errors wait for `patched` (kube reports them there)."""
        try:
            return parse(raw)
        except BeyondEmulator as exc:
            raise bad_request(str(exc)) from exc
        except BodyError as exc:
            if not self.strict and media_type == MERGE_PATCH:
                raise bad_request("Invalid JSON Patch") from exc
            raise bad_request(f"error decoding patch: {exc}") from exc

    def patched(self, obj: KubeObject, patch: Body, media_type: str) -> None:
        """Settle the strict errors of a patch and of the object it made."""
        if not self.strict:
            return
        errors = [f'duplicate field "{path}"' for path in patch.duplicates]
        if media_type == JSON_PATCH:
            operations = patch.value if isinstance(patch.value, list) else []
            errors += [
                f'unknown field "[{index}].{key}"'
                for index, operation in enumerate(operations)
                if isinstance(operation, dict)
                for key in operation
                if key not in _JSON_PATCH_OPERATION_FIELDS
            ]
            errors = [f"json patch {error}" for error in errors]
        self._settle(
            errors + self._unknown(obj),
            lambda message: invalid_kind(
                "", "", "", [fields.invalid("patch", gotext.json_text(obj), message)]
            ),
        )

    def _unknown(self, obj: KubeObject) -> list[str]:
        unknown = sorted(known_metadata(obj)[1])
        if self.rtype.schema is not None:
            unknown += self.rtype.schema.unknown_fields(obj)
        return [f'unknown field "{path}"' for path in unknown]

    def _settle(self, errors: list[str], refuse: Callable[[str], kmock.KubernetesError]) -> None:
        if not errors:
            return
        if self.directive == "Strict":
            raise refuse(_strict_error(errors))
        for error in errors:
            warnings.add(error)

    def _unrecognized(self, raw: bytes, error: str) -> kmock.KubernetesError:
        return bad_request(
            f"the object provided is unrecognized (must be of type {self.rtype.kind}):"
            f" couldn't get version/kind; json parse error: {error} ({_summary(raw)})"
        )
