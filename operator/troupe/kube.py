"""The client's HTTP calls to the Kubernetes API: plain dicts in and out, every call bounded.

Built on the ``kubernetes`` client's ``ApiClient`` (its kubeconfig handling, TLS and
authentication) through its generic request path, so that objects stay the JSON the server
sent, Troupe's kinds and built-in kinds alike. A one-shot call is bounded in total by the
connection's timeout; a stream (a watch, a followed log) by the time to connect and the
longest silence between two reads, and a watch also by the server's ``timeoutSeconds``.
Every failure becomes a :mod:`troupe.errors` error with one line saying what failed:
urllib3's and the client's exceptions never leave this module.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote

import urllib3
from kubernetes.client.exceptions import ApiException

from troupe.connection import Connection
from troupe.errors import TroupeError, Unreachable, from_status

Body = dict[str, Any]
MERGE_PATCH: Final = "application/merge-patch+json"
STREAM_CONNECT_SECONDS: Final = 10.0
"""Most time to open a stream (a watch, a followed log)."""


def resource_path(group_version: str, plural: str, namespace: str | None, name: str = "") -> str:
    """The REST path of a collection (in a namespace, or across all) or of one object."""
    root = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
    scope = f"/namespaces/{quote(namespace, safe='')}" if namespace else ""
    return f"{root}{scope}/{plural}" + (f"/{quote(name, safe='')}" if name else "")


@dataclass(frozen=True)
class Kube:
    """Calls on one connection; ``what`` in each names the object for error lines."""

    connection: Connection

    def get(self, path: str, what: str, query: Mapping[str, str] | None = None) -> Body:
        return self._json("GET", path, what, query=query)

    def create(self, path: str, body: Body, what: str) -> Body:
        """Create, refusing unknown fields as ``kubectl create`` does (not dropping them)."""
        return self._json("POST", path, what, body=body, query={"fieldValidation": "Strict"})

    def merge_patch(self, path: str, patch: Body, what: str) -> Body:
        return self._json("PATCH", path, what, body=patch, ctype=MERGE_PATCH)

    def list(self, path: str, what: str, label_selector: str = "") -> list[Body]:
        """Every item, page by page (the server's ``continue`` token), in the server's order."""
        items: list[Body] = []
        token = ""
        while True:
            query = {"limit": "500"}
            if label_selector:
                query["labelSelector"] = label_selector
            if token:
                query["continue"] = token
            page = self.get(path, what, query)
            items.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue") or ""
            if not token:
                return items

    def text(self, path: str, what: str, query: Mapping[str, str] | None = None) -> str:
        """A plain-text answer (a Pod's log)."""
        with self._send("GET", path, what, query=query) as response:
            return bytes(response.data).decode(errors="replace")

    @contextlib.contextmanager
    def stream(
        self, path: str, what: str, query: Mapping[str, str], idle_seconds: float
    ) -> Iterator[Iterator[bytes]]:
        """The answer's lines as they arrive; Unreachable when the stream breaks or goes
        quiet for ``idle_seconds``."""
        timeout = (min(STREAM_CONNECT_SECONDS, self.connection.timeout_seconds), idle_seconds)
        with self._send("GET", path, what, query=query, timeout=timeout, preload=False) as raw:
            yield _lines(raw, what)

    def _json(self, method: str, path: str, what: str, **options: Any) -> Body:
        """The JSON object answered; ``options`` are ``_send``'s."""
        with self._send(method, path, what, **options) as answer:
            try:
                decoded = json.loads(answer.data or b"{}")
            except ValueError:
                raise Unreachable(f"the API server sent no JSON for {what}") from None
        if not isinstance(decoded, dict):
            raise Unreachable(f"the API server sent no object for {what}")
        return decoded

    @contextlib.contextmanager
    def _send(
        self,
        method: str,
        path: str,
        what: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Body | None = None,
        ctype: str = "application/json",
        timeout: float | tuple[float, float] | None = None,
        preload: bool = True,
    ) -> Iterator[urllib3.BaseHTTPResponse]:
        api = self.connection.api
        headers = {"Accept": "application/json, */*", "Content-Type": ctype}
        _, url, sent_headers, sent_body, _ = api.param_serialize(
            method,
            path,
            query_params=list((query or {}).items()),
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        bound = timeout or self.connection.timeout_seconds
        try:
            answer = api.call_api(
                method, url, header_params=sent_headers, body=sent_body, _request_timeout=bound
            )
        except (urllib3.exceptions.HTTPError, ApiException, OSError) as error:
            raise _unreachable(error, what, self.connection) from None
        raw: urllib3.BaseHTTPResponse = answer.response
        try:
            if preload or not 200 <= raw.status <= 299:
                raw.read(cache_content=True)  # kept as ``raw.data``
            if not 200 <= raw.status <= 299:
                raise from_status(raw.status, raw.data, what)
            yield raw
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise _unreachable(error, what, self.connection) from None
        finally:
            if not preload:
                raw.close()  # a stream left unread must not go back to the pool
            raw.release_conn()


def _lines(raw: urllib3.BaseHTTPResponse, what: str) -> Iterator[bytes]:
    pending = b""
    try:
        for chunk in raw.stream(64 * 1024, decode_content=True):
            pending += chunk
            *complete, pending = pending.split(b"\n")
            yield from complete
    except (urllib3.exceptions.HTTPError, OSError) as error:
        raise Unreachable(f"the stream of {what} broke: {_cause(error)}") from None
    if pending:
        yield pending


def _cause(error: BaseException) -> str:
    """The innermost reason of a urllib3 error, in one line."""
    reason = getattr(error, "reason", None)
    inner = reason if isinstance(reason, BaseException) else error
    text = " ".join(str(inner).split())
    if isinstance(inner, urllib3.exceptions.NewConnectionError) or "Connection refused" in text:
        return "connection refused"
    if isinstance(inner, urllib3.exceptions.TimeoutError) or "timed out" in text:
        return "no answer in time"
    return text.rsplit(": ", 1)[-1] or type(inner).__name__


def _unreachable(error: BaseException, what: str, connection: Connection) -> TroupeError:
    if isinstance(error, ApiException) and error.status:
        return from_status(int(error.status), error.body, what)
    host = connection.api.configuration.host
    return Unreachable(f"cannot reach the Kubernetes API at {host} ({what}): {_cause(error)}")
