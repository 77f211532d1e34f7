"""kmock's request reading and reaction dispatch, minus a parser bug and history scans.

kmock's own reading of a URL fails on `/api/v1/namespaces` (a 500 for every namespace list
and watch) and misreads `/api/v1/namespaces/<name>`; `read_request` builds kmock's `Request`
with kube-apiserver's reading instead (`kube.request_info`), so kmock criteria such as
`kmock.resource("v1/namespaces")`, `kmock.namespace(...)` and `kmock.name(...)` hold for
every URL.

kmock decides whether a reaction sees a request by walking the reaction's view over every
request the server has recorded (`request in view`), re-running every filter on each of
them: the cost of one request grows with the number of requests before it, which an
operator test (thousands of requests) or the controller benchmark (hundreds of thousands)
cannot afford. `sees` answers the same question for the request alone, walking the view
chain (root, priorities, filters, `|`, `&`, `-`). Views whose answer depends on history
(slices such as `[:3]`, live streams) fall back to kmock's own scan, so their meaning
stays kmock's and only tests that use them pay for it.

kmock's parsed body (`request.data`) is None for a body nested too deep to parse safely
(`kube.bodies`); the handler answers it with 400.

Reactions are tried in kmock's order (highest priority first, then oldest first), with
kmock's outcomes: a response ends the dispatch; `ReactionMismatchError` disables the
reaction; `NotImplementedError` ("matched, but nothing to respond with") passes the request
on. The emulator's inspecting reactions (access control, faults, counters) raise `PassOn`,
a `NotImplementedError`, to let the next reaction serve the request.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Sequence

import aiohttp.web
import attrs
import kmock

from tests.support.kube.bodies import is_readable
from tests.support.kube.request_info import RequestInfo

_ACTIONS = {
    "list": kmock.action.LIST,
    "watch": kmock.action.WATCH,
    "get": kmock.action.FETCH,
    "create": kmock.action.CREATE,
    "update": kmock.action.UPDATE,
    "patch": kmock.action.UPDATE,
    "delete": kmock.action.DELETE,
}


class PassOn(NotImplementedError):
    """Raised by a reaction that inspected a request and lets the next reaction serve it."""


def _resource(info: RequestInfo) -> kmock.resource | None:
    """The resource, or for discovery (`/api/v1`, `/apis/g[/v]`) its group and version."""
    if info.is_resource_request:
        return kmock.resource(group=info.api_group, version=info.api_version, plural=info.resource)
    segments = [segment for segment in info.path.split("/") if segment]
    if len(segments) == 2 and segments[0] == "api":
        return kmock.resource(group="", version=segments[1])
    if len(segments) in {2, 3} and segments[0] == "apis":
        return kmock.resource(
            group=segments[1], version=segments[2] if len(segments) == 3 else None
        )
    return None


async def read_request(raw: aiohttp.web.BaseRequest, *, id: int) -> kmock.Request:
    """kmock's `Request` for an incoming HTTP request, its Kubernetes parts read as kube does."""
    body = await raw.read()
    try:
        data = json.loads(body) if body and is_readable(body) else None
    except ValueError:
        data = None
    query = dict(raw.query)
    info = RequestInfo.of(raw.method, raw.path, query)
    return kmock.Request(
        id=id,
        raw_request=raw,
        url=raw.url,
        method=raw.method,
        params=query,
        headers=dict(raw.headers),
        cookies=dict(raw.cookies),
        body=body,
        text=body.decode(errors="replace"),
        data=data,
        action=_ACTIONS.get(info.verb) if info.is_resource_request else None,
        resource=_resource(info),
        namespace=info.namespace or None,
        name=info.name or None,
        subresource=info.subresource or None,
    )


def sees(view: kmock.View, request: kmock.Request) -> bool:
    """Whether `request`, being dispatched by the handler that is `view`'s root, is in `view`."""
    match view:
        case kmock.Root():
            return True
        case kmock.Priority():
            return sees(view._source, request)
        case kmock.Filter() if type(view) is kmock.Filter:
            return sees(view._source, request) and view.criteria(request)
        case kmock.OrGroup():
            return any(sees(source, request) for source in view._sources)
        case kmock.AndGroup():
            return all(sees(source, request) for source in view._sources)
        case kmock.Exclusion():
            return sees(view._source, request) and not any(
                sees(excluded, request) for excluded in view._exclusions
            )
        case _:
            return request in view


def by_priority(reactions: Sequence[kmock.Reaction]) -> list[kmock.Reaction]:
    """Highest priority first; equal priorities (after padding with zeros) oldest first."""
    depth = max((len(reaction.priorities) for reaction in reactions), default=0)
    return sorted(
        reactions,
        key=lambda reaction: (
            tuple(-p for p in reaction.priorities) + (0.0,) * (depth - len(reaction.priorities))
        ),
    )


class PriorityOrder:
    """`by_priority`, recomputed only when the reactions change (walking them is costly)."""

    def __init__(self) -> None:
        self._seen: tuple[kmock.Reaction, ...] = ()
        self._ordered: list[kmock.Reaction] = []

    def __call__(self, reactions: Sequence[kmock.Reaction]) -> list[kmock.Reaction]:
        current = tuple(reactions)
        unchanged = len(current) == len(self._seen) and all(map(operator.is_, current, self._seen))
        if not unchanged:
            self._seen, self._ordered = current, by_priority(current)
        return self._ordered


@attrs.frozen
class Predicate(kmock.Criteria):
    """A criterion that is a plain `request -> bool` function.

    kmock's own criterion for a callable inspects its signature and re-interprets its result
    on every call; the emulator's criteria run on every request, so they skip that.
    """

    test: Callable[[kmock.Request], bool]

    def __call__(self, request: kmock.Request) -> bool:
        return self.test(request)


def header(request: kmock.Request, name: str) -> str:
    """A request header by its case-insensitive name ("" when absent)."""
    wanted = name.lower()
    return next((value for key, value in request.headers.items() if key.lower() == wanted), "")
