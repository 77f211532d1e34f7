"""The harness's API emulator with a request counter, for the controller benchmark.

The benchmark reports Kubernetes API requests per task, and only the operator's: every
request the emulator receives is counted, keyed by which client sent it (its User-Agent),
the verb and the resource. The bench's own clients (the instant kubelet, the workload
driver) name themselves with ``BENCH_AGENT_PREFIX`` so they can be told apart. The counter
is a kmock reaction in front of all others (above the emulator's access checks) that
counts and passes the request on, so ``tests/support`` stays as the tests use it; it counts
requests, not responses (a refused or failed request counts too).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import NoReturn

import kmock

from tests.support.emulator import EmulatedCluster
from tests.support.kube.dispatch import PassOn, header
from tests.support.kube.request_info import RequestInfo

BENCH_AGENT_PREFIX = "troupe-bench"
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_CLIENT_FAMILIES = (
    ("bench", BENCH_AGENT_PREFIX),
    ("troupe-operator", "troupe-operator/"),
    ("kopf", "kopf/"),
)


@dataclass(frozen=True)
class RequestKey:
    """One kind of request: who sent it, the verb, and what it touched."""

    client: str
    """``bench``, ``troupe-operator`` (the operator's own client), ``kopf`` (kopf's aiohttp
    client) or ``client`` (anything else, e.g. the ``kubernetes`` package's default agent)."""
    method: str
    """HTTP method, or ``WATCH`` for a GET with ``watch=true``."""
    resource: str
    """Plural, with ``/status`` for the status subresource; the path for non-resource URLs."""

    @property
    def is_write(self) -> bool:
        return self.method in WRITE_METHODS


def _client_of(user_agent: str) -> str:
    return next(
        (family for family, prefix in _CLIENT_FAMILIES if user_agent.startswith(prefix)),
        "client",
    )


def request_key(request: kmock.Request) -> RequestKey:
    info = RequestInfo.of_request(request)
    method = "WATCH" if info.verb == "watch" else request.method.value
    resource = info.full_resource if info.is_resource_request else request.url.path
    return RequestKey(_client_of(header(request, "User-Agent")), method, resource)


class CountingCluster(EmulatedCluster):
    """An ``EmulatedCluster`` that counts the requests it receives (see ``counts``)."""

    def __init__(self, *, bookmark_interval: float = 1.0, history_limit: int = 20_000) -> None:
        super().__init__(
            bookmark_interval=bookmark_interval,
            history_limit=history_limit,
            request_log_limit=1_000,
        )
        self._counts: Counter[RequestKey] = Counter()
        self.handler.override**1 << self._count

    def _count(self, request: kmock.Request) -> NoReturn:
        self._counts[request_key(request)] += 1
        raise PassOn

    def counts(self) -> Counter[RequestKey]:
        """A snapshot of the counts so far (taken on the emulator's loop)."""
        return self._loop.call(lambda: Counter(self._counts))
