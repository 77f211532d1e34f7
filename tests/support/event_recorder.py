"""Events posted by the Job runner's controllers, deduplicated as client-go's recorder does.

The Job controller (`FailedCreate`), the scheduler (`FailedScheduling`) and the kubelet
(`Failed`, `FailedMount`, `BackOff`) report why a Pod is stuck through `v1` Events, and an
operator may surface them. A repeated event (same object, reason and message) bumps the
`count` and `lastTimestamp` of the first one instead of piling up new objects. Posting is
best effort, as in client-go: a failure to post is ignored.

Not emulated: event aggregation across similar messages, rate limiting, `events.k8s.io/v1`.
"""

from __future__ import annotations

import contextlib
import datetime

import aiohttp

from tests.support.kube_http import KubeHttp, KubeHttpError, KubeObject


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class EventRecorder:
    def __init__(self, api: KubeHttp) -> None:
        self._api = api
        self._posted: dict[tuple[str, str, str], tuple[str, int]] = {}

    async def record(
        self, component: str, involved: KubeObject, event_type: str, reason: str, message: str
    ) -> None:
        metadata = involved["metadata"]
        namespace = metadata["namespace"]
        key = (metadata["uid"], reason, message)
        with contextlib.suppress(KubeHttpError, aiohttp.ClientError):
            if key in self._posted:
                name, count = self._posted[key]
                await self._api.merge_patch(
                    f"/api/v1/namespaces/{namespace}/events/{name}",
                    {"count": count + 1, "lastTimestamp": _now()},
                )
                self._posted[key] = (name, count + 1)
                return
            posted = await self._api.create(
                f"/api/v1/namespaces/{namespace}/events",
                self._event(component, involved, event_type, reason, message),
            )
            self._posted[key] = (posted["metadata"]["name"], 1)

    @staticmethod
    def _event(
        component: str, involved: KubeObject, event_type: str, reason: str, message: str
    ) -> KubeObject:
        metadata = involved["metadata"]
        now = _now()
        return {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "generateName": f"{metadata['name']}.",
                "namespace": metadata["namespace"],
            },
            "involvedObject": {
                "apiVersion": involved["apiVersion"],
                "kind": involved["kind"],
                "name": metadata["name"],
                "namespace": metadata["namespace"],
                "uid": metadata["uid"],
            },
            "type": event_type,
            "reason": reason,
            "message": message,
            "count": 1,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "source": {"component": component},
            "reportingComponent": component,
        }
