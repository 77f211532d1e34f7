"""The harness's API emulator with a request counter, for the controller benchmark.

The benchmark reports Kubernetes API requests per task, and only the operator's: the
emulator counts every request it serves, keyed by which client sent it (its User-Agent),
the verb and the resource. The bench's own clients (the instant kubelet, the workload
driver) name themselves with ``BENCH_AGENT_PREFIX`` so they can be told apart. Counting
happens here, in a subclass, so ``tests/support`` stays as the tests use it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import aiohttp.web
import attrs
from typing_extensions import override

from tests.support.emulator import EmulatedCluster
from tests.support.kube.handler import KubeEmulator
from tests.support.kube.paths import ApiPath

BENCH_AGENT_PREFIX = "troupe-bench"
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class RequestKey:
    """One kind of request: who sent it, the verb, and what it touched."""

    client: str
    """``bench``, ``kopf`` (kopf's own aiohttp client) or ``client`` (the ``kubernetes``
    package, which the reconciler uses)."""
    method: str
    """HTTP method, or ``WATCH`` for a GET with ``watch=true``."""
    resource: str
    """Plural, with ``/status`` for the status subresource; the path for non-resource URLs."""

    @property
    def is_write(self) -> bool:
        return self.method in WRITE_METHODS


def _client_of(user_agent: str) -> str:
    if user_agent.startswith(BENCH_AGENT_PREFIX):
        return "bench"
    if user_agent.startswith("kopf/"):
        return "kopf"
    return "client"


def request_key(request: aiohttp.web.BaseRequest) -> RequestKey:
    method = request.method.upper()
    if method == "GET" and request.query.get("watch") in {"true", "1"}:
        method = "WATCH"
    path = ApiPath.parse(request.path)
    if path is None:
        resource = request.path
    else:
        resource = path.plural + (f"/{path.subresource}" if path.subresource else "")
    return RequestKey(_client_of(request.headers.get("User-Agent", "")), method, resource)


@attrs.define(kw_only=True)
class CountingEmulator(KubeEmulator):
    """The emulator's handler, counting each request before serving it."""

    counts: Counter[RequestKey] = attrs.field(init=False, factory=Counter)

    @override
    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        self.counts[request_key(raw_request)] += 1
        return await super().__call__(raw_request)


class CountingCluster(EmulatedCluster):
    """An ``EmulatedCluster`` whose handler counts requests (see ``counts``)."""

    def __init__(self, *, bookmark_interval: float = 1.0, history_limit: int = 20_000) -> None:
        super().__init__(bookmark_interval=bookmark_interval, history_limit=history_limit)
        self.handler = CountingEmulator(
            bookmark_interval=bookmark_interval, history_limit=history_limit
        )

    def counts(self) -> Counter[RequestKey]:
        """A snapshot of the counts so far (taken on the emulator's loop)."""
        handler = self.handler
        assert isinstance(handler, CountingEmulator)
        return self._loop.call(lambda: Counter(handler.counts))
