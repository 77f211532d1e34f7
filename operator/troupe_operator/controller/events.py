"""Posting the core's Events on a Workflow, the way Kubernetes components do.

An Event's name is derived from what it says (the Workflow's uid, type,
reason and message), so the same Event is one object: posting it again finds
it and counts it (``count``, ``lastTimestamp``), as client-go's event
correlator aggregates repeats, instead of piling up copies. Each carries
``reportingController`` and ``reportingInstance``. The shell posts a
decision's Events only after its status was written, so a replayed reconcile
(its status write failed) posts nothing twice. Events are best effort, as
everywhere in Kubernetes: a failure is logged and counted, never a reason to
fail a reconcile.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Final

from troupe_operator.api import API_VERSION
from troupe_operator.controller import metrics
from troupe_operator.controller.kube import ApiError, Kube
from troupe_operator.workflow import Event

logger = logging.getLogger(__name__)

REPORTING_CONTROLLER: Final = "troupe.dev/operator"
REMEMBERED: Final = 4096
"""Events whose count is kept in memory (older ones are read back before counting)."""


def event_name(workflow: Mapping[str, Any], event: Event) -> str:
    metadata = workflow["metadata"]
    key = "\0".join((metadata["uid"], event.type.value, event.reason, event.message))
    return f"{metadata['name'][:200]}.{hashlib.sha256(key.encode()).hexdigest()[:16]}"


class EventRecorder:
    def __init__(self, kube: Kube, instance: str, clock: Callable[[], datetime]) -> None:
        self.kube = kube
        self.instance = instance
        self.clock = clock
        self._counts: OrderedDict[tuple[str, str], int] = OrderedDict()

    async def post(self, workflow: Mapping[str, Any], event: Event) -> None:
        metadata = workflow["metadata"]
        namespace, name = metadata["namespace"], event_name(workflow, event)
        now = self.clock().strftime("%Y-%m-%dT%H:%M:%SZ")
        try:
            created = await self.kube.create_event(
                namespace, self._body(workflow, event, name, now)
            )
            if created is None:
                await self._count_again(namespace, name, now)
            else:
                self._remember((namespace, name), 1)
        except ApiError as error:
            metrics.EVENTS_LOST.inc()
            logger.warning(
                "could not post Event %s on %s: %s", event.reason, metadata["name"], error
            )

    async def _count_again(self, namespace: str, name: str, now: str) -> None:
        count = self._counts.get((namespace, name))
        if count is None:
            existing = await self.kube.read_event(namespace, name)
            count = int(existing.get("count") or 1)
        await self.kube.patch_event(namespace, name, {"count": count + 1, "lastTimestamp": now})
        self._remember((namespace, name), count + 1)

    def _remember(self, key: tuple[str, str], count: int) -> None:
        self._counts[key] = count
        self._counts.move_to_end(key)
        while len(self._counts) > REMEMBERED:
            self._counts.popitem(last=False)

    def _body(
        self, workflow: Mapping[str, Any], event: Event, name: str, now: str
    ) -> dict[str, Any]:
        metadata = workflow["metadata"]
        return {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": metadata["namespace"]},
            "involvedObject": {
                "apiVersion": API_VERSION,
                "kind": "Workflow",
                "name": metadata["name"],
                "namespace": metadata["namespace"],
                "uid": metadata["uid"],
                "resourceVersion": metadata.get("resourceVersion"),
            },
            "type": event.type.value,
            "reason": event.reason,
            "message": event.message,
            "source": {"component": REPORTING_CONTROLLER},
            "reportingComponent": REPORTING_CONTROLLER,
            "reportingInstance": self.instance,
            "action": event.reason,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
