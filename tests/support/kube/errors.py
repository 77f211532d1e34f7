"""Kubernetes `Status` failures, raised as kmock's `KubernetesError`, rendered by the handler.

kmock's own errors carry reasons like `Object Not Found` and a Python traceback in `details`;
clients such as the `kubernetes` package and kopf look at `reason` (`NotFound`, `Conflict`,
`AlreadyExists`, `Invalid`, `Forbidden`, `TooManyRequests`), and tests assert on messages, so
these helpers produce the reasons, messages and `details` kube-apiserver sends, and
`status_body` renders them as it does: `reason` and `details` left out when empty (a 500
passed on from etcd has no reason). 422s follow `errors.NewInvalid`: `Kind.group "name" is
invalid: <field errors>` (`kube.fields`), details naming the kind (not the resource). The
handler renders `details.retryAfterSeconds` as a `Retry-After` header too, as the API server
does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import kmock

from tests.support.kube.fields import FieldError, aggregate
from tests.support.kube.resources import ResourceType


def _error(code: int, reason: str, message: str, **details: Any) -> kmock.KubernetesError:
    """A `Status` failure; the handler renders it as kube-apiserver does (empty fields left out)."""
    return kmock.KubernetesError(status=code, reason=reason, message=message, details=details)


def _details(rtype: ResourceType, name: str) -> dict[str, str]:
    return {"name": name, "group": rtype.group, "kind": rtype.plural}


def not_found(rtype: ResourceType, name: str) -> kmock.KubernetesError:
    message = f'{rtype.qualified_plural} "{name}" not found'
    return _error(404, "NotFound", message, **_details(rtype, name))


def already_exists(rtype: ResourceType, name: str) -> kmock.KubernetesError:
    message = f'{rtype.qualified_plural} "{name}" already exists'
    return _error(409, "AlreadyExists", message, **_details(rtype, name))


def conflict(rtype: ResourceType, name: str) -> kmock.KubernetesError:
    message = (
        f'Operation cannot be fulfilled on {rtype.qualified_plural} "{name}": the object has been'
        " modified; please apply your changes to the latest version and try again"
    )
    return _error(409, "Conflict", message, **_details(rtype, name))


_CAUSE_TYPES = (
    ("Required value", "FieldValueRequired"),
    ("Too long", "FieldValueTooLong"),
    ("Too many", "FieldValueTooMany"),
    ("Unsupported value", "FieldValueNotSupported"),
    ("Forbidden", "FieldValueForbidden"),
    ("Duplicate value", "FieldValueDuplicate"),
)


def _field_error(cause: FieldError | tuple[str, str]) -> FieldError:
    """A cause as given, or a `(field, message)` pair typed by the message's first words."""
    if isinstance(cause, FieldError):
        return cause
    path, message = cause
    reason = next(
        (kind for prefix, kind in _CAUSE_TYPES if message.startswith(prefix)), "FieldValueInvalid"
    )
    return FieldError(path, message, reason)


def conflict_with(message: str) -> kmock.KubernetesError:
    return _error(409, "Conflict", message)


def invalid_kind(
    group: str, kind: str, name: str, causes: Sequence[FieldError | tuple[str, str]]
) -> kmock.KubernetesError:
    """422 as `errors.NewInvalid` builds it: `Kind.group "name" is invalid: <field errors>`."""
    errors = [_field_error(cause) for cause in causes]
    qualified = f"{kind}.{group}" if group else kind
    details = {"name": name, "group": group, "kind": kind}
    return _error(
        422,
        "Invalid",
        f'{qualified} "{name}" is invalid: {aggregate(errors)}',
        **{key: value for key, value in details.items() if value},
        causes=[
            {"reason": error.reason, "field": error.field, "message": error.message}
            for error in errors
        ],
    )


def invalid(
    rtype: ResourceType, name: str, causes: Sequence[FieldError | tuple[str, str]]
) -> kmock.KubernetesError:
    """422 for an object of a served kind, one cause per field error.

    One cause reads `Kind "name" is invalid: field: message`; several are listed in brackets.
    """
    return invalid_kind(rtype.group, rtype.kind, name, causes)


def forbidden(group: str, resource: str, name: str, why: str) -> kmock.KubernetesError:
    """403 as kube-apiserver words it: `configmaps "x" is forbidden: <why>`."""
    qualified = f"{resource}.{group}" if group else resource
    if not resource:
        message = f"forbidden: {why}"
    elif name:
        message = f'{qualified} "{name}" is forbidden: {why}'
    else:
        message = f"{qualified} is forbidden: {why}"
    details = {"name": name, "group": group, "kind": resource}
    return _error(
        403, "Forbidden", message, **{key: value for key, value in details.items() if value}
    )


def unauthorized() -> kmock.KubernetesError:
    return _error(401, "Unauthorized", "Unauthorized")


def request_too_large(limit: int) -> kmock.KubernetesError:
    return _error(413, "RequestEntityTooLarge", f"Request entity too large: limit is {limit}")


_SERVER_ERRORS = {
    429: ("TooManyRequests", "Too many requests, please try again later."),
    500: ("InternalError", "Internal error occurred: injected fault"),
    503: ("ServiceUnavailable", "the server is currently unable to handle the request"),
    504: ("Timeout", "Timeout: request did not complete within the allotted timeout"),
}


def status_body(error: kmock.KubernetesError) -> dict[str, Any]:
    """The `Status` object of an error, without the fields Go's `omitempty` leaves out."""
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}}
    body["status"] = "Failure"
    body.update(
        (key, value)
        for key, value in (
            ("message", error.message),
            ("reason", error.reason),
            ("details", error.details),
        )
        if value
    )
    body["code"] = error.status
    return body


def etcd_refusal(message: str) -> kmock.KubernetesError:
    """500 with no reason: an etcd error kube-apiserver passes on untranslated."""
    return _error(500, "", message)


def server_error(code: int, retry_after: int | None = None) -> kmock.KubernetesError:
    """A failure of the API server itself (429, 500, 503, 504), with `retryAfterSeconds`."""
    reason, message = _SERVER_ERRORS.get(code, ("InternalError", f"injected HTTP {code}"))
    retry = {} if retry_after is None else {"retryAfterSeconds": retry_after}
    return _error(code, reason, message, **retry)


def bad_request(message: str) -> kmock.KubernetesError:
    return _error(400, "BadRequest", message)


def unsupported_media_type(content_type: str) -> kmock.KubernetesError:
    return _error(
        415,
        "UnsupportedMediaType",
        f"the body of the request was in an unknown format: {content_type}",
    )


def method_not_allowed(message: str) -> kmock.KubernetesError:
    return _error(405, "MethodNotAllowed", message)


def gone(message: str) -> kmock.KubernetesError:
    return _error(410, "Expired", message)
