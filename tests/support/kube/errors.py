"""Kubernetes `Status` failures, raised as kmock's `KubernetesError` so kmock renders the body.

kmock's own errors carry reasons like `Object Not Found` and a Python traceback in `details`;
clients such as the `kubernetes` package and kopf look at `reason` (`NotFound`, `Conflict`,
`AlreadyExists`, `Invalid`, `Forbidden`, `TooManyRequests`), and tests assert on messages, so
these helpers produce the reasons, messages and `details` kube-apiserver sends. The handler
renders `details.retryAfterSeconds` as a `Retry-After` header too, as the API server does.
"""

from __future__ import annotations

from typing import Any

import kmock

from tests.support.kube.resources import ResourceType


def _error(code: int, reason: str, message: str, **details: Any) -> kmock.KubernetesError:
    # kmock replaces empty details with a Python traceback; an empty causes list keeps it clean.
    return kmock.KubernetesError(
        status=code, reason=reason, message=message, details=details or {"causes": []}
    )


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
    ("Unsupported value", "FieldValueNotSupported"),
    ("Forbidden", "FieldValueForbidden"),
    ("Duplicate value", "FieldValueDuplicate"),
)


def _cause_type(message: str) -> str:
    return next(
        (kind for prefix, kind in _CAUSE_TYPES if message.startswith(prefix)), "FieldValueInvalid"
    )


def conflict_with(message: str) -> kmock.KubernetesError:
    return _error(409, "Conflict", message)


def invalid(rtype: ResourceType, name: str, causes: list[tuple[str, str]]) -> kmock.KubernetesError:
    """422 with one cause per `(field, message)`, worded like the API server's field errors.

    One cause reads `Kind "name" is invalid: field: message`; several are listed in brackets.
    """
    listed = [f"{path}: {text}" for path, text in causes]
    summary = listed[0] if len(listed) == 1 else f"[{', '.join(listed)}]"
    group_suffix = f".{rtype.group}" if rtype.group else ""
    message = f'{rtype.kind}{group_suffix} "{name}" is invalid: {summary}'
    return _error(
        422,
        "Invalid",
        message,
        **_details(rtype, name),
        causes=[
            {"reason": _cause_type(text), "field": path, "message": text} for path, text in causes
        ],
    )


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
