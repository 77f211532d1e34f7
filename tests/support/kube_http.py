"""A minimal asyncio Kubernetes API client for harness components (the Job runner).

The runner plays a cluster controller, so it talks to the emulator over HTTP like any
controller would, from its own event loop; the `kubernetes` package is synchronous and
kopf's client is private, hence this small aiohttp wrapper. It carries no credentials
(controllers are unrestricted here) and names itself with a User-Agent, so faults aimed
at other clients never hit it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

KubeObject = dict[str, Any]


class KubeHttpError(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body

    @property
    def message(self) -> str:
        """The `Status` message of the error (the body itself if it is not a `Status`)."""
        try:
            return str(json.loads(self.body)["message"])
        except (ValueError, KeyError, TypeError):
            return self.body


class KubeHttp:
    def __init__(self, base_url: str, *, user_agent: str) -> None:
        self._session = aiohttp.ClientSession(base_url, headers={"User-Agent": user_agent})

    async def close(self) -> None:
        await self._session.close()

    async def get(self, path: str) -> KubeObject:
        return await self._call("GET", path)

    async def create(self, path: str, body: KubeObject) -> KubeObject:
        return await self._call("POST", path, body)

    async def merge_patch(self, path: str, body: KubeObject) -> KubeObject:
        return await self._call("PATCH", path, body, "application/merge-patch+json")

    async def watch(self, path: str, resource_version: str) -> AsyncIterator[KubeObject]:
        """Events of one watch request (ends when the server ends it)."""
        params = {
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
        }
        async with self._session.get(
            path, params=params, timeout=aiohttp.ClientTimeout()
        ) as response:
            if response.status >= 400:
                raise KubeHttpError(response.status, await response.text())
            async for line in response.content:
                if line.strip():
                    yield json.loads(line)

    async def _call(
        self, method: str, path: str, body: KubeObject | None = None, content_type: str = ""
    ) -> KubeObject:
        headers = {"Content-Type": content_type or "application/json"}
        data = json.dumps(body) if body is not None else None
        async with self._session.request(method, path, data=data, headers=headers) as response:
            text = await response.text()
            if response.status >= 400:
                raise KubeHttpError(response.status, text)
            result: KubeObject = json.loads(text)
            return result
