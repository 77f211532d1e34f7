"""Plain-dict access to the Kubernetes API through the official client's transport.

The shell builds and reads objects as dicts (the shapes the core and the
task pods share); going through the typed models and back for every call
would cost time and hide nothing. This keeps the client's configuration,
auth and connection pool, and gives idempotent create and delete: an object
that already exists, or is already gone, is not an error.
"""

from __future__ import annotations

import json
from typing import Any, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException

Body = dict[str, Any]
MERGE_PATCH = "application/merge-patch+json"


def path(group_version: str, plural: str, namespace: str | None = None, name: str = "") -> str:
    """The REST path of a collection or object, e.g. ``("batch/v1", "jobs", "ns", "x")``."""
    root = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
    scope = f"/namespaces/{namespace}" if namespace else ""
    return f"{root}{scope}/{plural}" + (f"/{name}" if name else "")


class Kube:
    """Create, read, list, patch and delete objects as dicts."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api

    def _call(
        self,
        method: str,
        resource: str,
        body: Body | None = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
    ) -> Body:
        api = cast(Any, self.api)
        method, url, headers, payload, _ = api.param_serialize(
            method,
            resource,
            query_params=query or [],
            header_params={"Accept": "application/json", "Content-Type": content_type},
            body=body,
            auth_settings=["BearerToken"],
        )
        response = api.call_api(method, url, header_params=headers, body=payload)
        data = response.read()
        if response.status >= 400:
            raise ApiException(status=response.status, reason=response.reason, http_resp=response)
        return cast(Body, json.loads(data or b"{}"))

    def get(self, resource: str) -> Body | None:
        try:
            return self._call("GET", resource)
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def list(self, resource: str, label_selector: str = "") -> list[Body]:
        query = [("labelSelector", label_selector)] if label_selector else []
        items: list[Body] = self._call("GET", resource, query=query).get("items") or []
        return items

    def create(self, resource: str, body: Body) -> Body | None:
        """The created object; None when it already existed."""
        try:
            return self._call("POST", resource, body)
        except ApiException as error:
            if error.status == 409:
                return None
            raise

    def merge_patch(self, resource: str, patch: Body) -> Body:
        return self._call("PATCH", resource, patch, content_type=MERGE_PATCH)

    def delete(self, resource: str, propagation: str = "Background") -> None:
        try:
            self._call("DELETE", resource, {"propagationPolicy": propagation})
        except ApiException as error:
            if error.status != 404:
                raise
