"""The Pod `status` a scheduler and kubelet write at each step, as plain dicts.

An operator reads why a task is not running from here, so each step looks as on a real
node: `PodScheduled` False with reason `Unschedulable`; a waiting container (with
`PodScheduled`, `Initialized` True and `Ready`, `ContainersReady` False, reason
`ContainersNotReady`); a running one (all four True, `ready`/`started` true); a
terminated one (`Ready` False, reason `PodCompleted` or `PodFailed`).

Not written: `hostIP`, `podIP`, `qosClass`, `imageID` (empty), init and ephemeral containers.
"""

from __future__ import annotations

import datetime
from typing import Any

KubeObject = dict[str, Any]

UNSCHEDULABLE_MESSAGE = "0/1 nodes are available: 1 Insufficient cpu."


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _condition(kind: str, status: bool, reason: str = "", message: str = "") -> KubeObject:
    condition: KubeObject = {
        "type": kind,
        "status": "True" if status else "False",
        "lastProbeTime": None,
        "lastTransitionTime": now(),
    }
    if reason:
        condition["reason"] = reason
    if message:
        condition["message"] = message
    return condition


def _scheduled_conditions(ready: bool, not_ready_reason: str) -> list[KubeObject]:
    why = "" if ready else not_ready_reason
    return [
        _condition("PodScheduled", True),
        _condition("Initialized", True),
        _condition("ContainersReady", ready, why),
        _condition("Ready", ready, why),
    ]


def unschedulable() -> KubeObject:
    condition = _condition("PodScheduled", False, "Unschedulable", UNSCHEDULABLE_MESSAGE)
    return {"phase": "Pending", "conditions": [condition]}


def _container(container: KubeObject, state: KubeObject, *, running: bool) -> KubeObject:
    return {
        "name": container["name"],
        "state": state,
        "ready": running,
        "started": running,
        "restartCount": 0,
        "image": container.get("image", ""),
        "imageID": "",
    }


def waiting(container: KubeObject, started: str, reason: str, message: str) -> KubeObject:
    state: KubeObject = {"reason": reason}
    if message:
        state["message"] = message
    return {
        "phase": "Pending",
        "startTime": started,
        "conditions": _scheduled_conditions(False, "ContainersNotReady"),
        "containerStatuses": [_container(container, {"waiting": state}, running=False)],
    }


def running(container: KubeObject, started: str) -> KubeObject:
    return {
        "phase": "Running",
        "startTime": started,
        "conditions": _scheduled_conditions(True, ""),
        "containerStatuses": [
            _container(container, {"running": {"startedAt": started}}, running=True)
        ],
    }


def terminated(
    container: KubeObject, started: str, exit_code: int, reason: str, message: str
) -> KubeObject:
    succeeded = exit_code == 0
    state = {
        "terminated": {
            "exitCode": exit_code,
            "reason": reason,
            "message": message,
            "startedAt": started,
            "finishedAt": now(),
        }
    }
    return {
        "phase": "Succeeded" if succeeded else "Failed",
        "startTime": started,
        "conditions": _scheduled_conditions(False, "PodCompleted" if succeeded else "PodFailed"),
        "containerStatuses": [_container(container, state, running=False)],
    }
