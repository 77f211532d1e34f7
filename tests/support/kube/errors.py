"""Kubernetes `Status` failures, raised as kmock's `KubernetesError` so kmock renders the body.

kmock's own errors carry reasons like `Object Not Found` and a Python traceback in `details`;
clients such as the `kubernetes` package and kopf look at `reason` (`NotFound`, `Conflict`,
`AlreadyExists`, `Invalid`), so these helpers produce the reasons and messages the real API
server sends.
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


def invalid(rtype: ResourceType, name: str, causes: list[tuple[str, str]]) -> kmock.KubernetesError:
    """422 with one cause per `(field, message)`, worded like the API server's field errors."""
    listed = ", ".join(f"{path}: {text}" for path, text in causes)
    group_suffix = f".{rtype.group}" if rtype.group else ""
    message = f'{rtype.kind}{group_suffix} "{name}" is invalid: [{listed}]'
    return _error(
        422,
        "Invalid",
        message,
        **_details(rtype, name),
        causes=[
            {"reason": "FieldValueInvalid", "field": path, "message": text} for path, text in causes
        ],
    )


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
