"""A kopf operator runs in-process against the emulator and stops cleanly."""

from __future__ import annotations

import threading
import time
from typing import Any

import kopf
from kubernetes.client import ApiClient, CoreV1Api, CustomObjectsApi

from tests.support.emulator import EmulatedCluster
from tests.support.fixtures import RunOperator
from tests.support.samples import WIDGET_CRD, WIDGETS, widget
from tests.support.waiting import wait_for


def _widget_registry() -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.create(*WIDGETS, registry=registry)
    def mark_seen(spec: kopf.Spec, body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        patch.status["phase"] = f"Seen size {spec['size']}"
        kopf.info(body, reason="Seen", message="the widget was seen")

    return registry


def test_kopf_handler_patches_status_of_a_custom_object(
    emulator: EmulatedCluster, kube_api: ApiClient, run_operator: RunOperator
) -> None:
    emulator.load_crds(WIDGET_CRD)
    widgets = CustomObjectsApi(kube_api)
    threads_before = set(threading.enumerate())
    started = time.monotonic()
    with run_operator(_widget_registry(), namespaces=["default"]):
        startup = time.monotonic() - started
        widgets.create_namespaced_custom_object(
            *WIDGETS[:2], "default", WIDGETS[2], widget("w", size=3)
        )

        def phase() -> str | None:
            obj = widgets.get_namespaced_custom_object(*WIDGETS[:2], "default", WIDGETS[2], "w")
            return (obj.get("status") or {}).get("phase")

        assert wait_for(phase, timeout=10, what="kopf to patch the status") == "Seen size 3"
        events = wait_for(
            lambda: CoreV1Api(kube_api).list_namespaced_event("default").items, what="events"
        )
        assert [(e.involved_object.name, e.reason) for e in events] == [("w", "Seen")]
        stopping = time.monotonic()
    shutdown = time.monotonic() - stopping
    assert startup < 1.0 and shutdown < 1.0, (startup, shutdown)
    leftovers = wait_for(
        lambda: set(threading.enumerate()) <= threads_before or None, timeout=3, what="threads"
    )
    assert leftovers
