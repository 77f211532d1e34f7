"""Two operator processes, one Lease: only the holder reconciles, and the standby takes over.

Both run as `kopf run -m troupe_operator.main` against the emulator (leases of 2 s, renewed
every 0.2 s, deadline 1 s). The leader is stopped mid-run, gracefully (SIGTERM, the Lease is
released) or by SIGKILL (it expires); the standby must finish every run with one Job, one
attempt and one model request per task. Each replica posts the transitions it sees as Events
on the Lease.
"""

from __future__ import annotations

import contextlib
import pathlib
import signal
import time
from typing import Any

import kubernetes
import pytest

from tests.integration.test_workflow_faults import (
    assert_every_run_clean,
    reply,
    runs,
    wait_until_ended,
)
from tests.integration.troupe_driver import Troupe, agent
from tests.support.openai_stub import Fault, OpenAIStub
from tests.support.waiting import wait_for


def holder(api: kubernetes.client.ApiClient) -> str:
    coordination = kubernetes.client.CoordinationV1Api(api)
    with contextlib.suppress(kubernetes.client.ApiException):
        lease: Any = coordination.read_namespaced_lease("troupe-operator", "default")
        return str(lease.spec.holder_identity or "")
    return ""


def lease_events(api: kubernetes.client.ApiClient) -> set[tuple[str, str, str, str]]:
    """(type, reason, reporting instance, message) of each Event on the operator's Lease."""
    events = kubernetes.client.CoreV1Api(api).list_namespaced_event("default").items
    return {
        (e.type, e.reason, e.reporting_instance, e.message)
        for e in events
        if e.involved_object.kind == "Lease" and e.involved_object.name == "troupe-operator"
    }


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL], ids=["graceful", "crash"])
def test_only_the_leader_reconciles_and_the_standby_finishes_its_runs(
    troupe: Troupe, kubeconfig: pathlib.Path, stop: signal.Signals
) -> None:
    with OpenAIStub(reply=reply) as stub:
        stub.inject(*[Fault.slow(0.3)] * 16)
        troupe.apply(agent("worker", stub.base_url), *runs("ha-one", "ha-two"))
        with (
            troupe.operator_process(kubeconfig, "op-a") as first,
            troupe.operator_process(kubeconfig, "op-b") as second,
        ):
            leader_name = wait_for(lambda: holder(troupe.api), timeout=60, what="a leader")
            leader, standby = (first, second) if leader_name.startswith("op-a") else (second, first)
            wait_for(lambda: troupe.jobs("ha-one"), timeout=60, what="the first Jobs")
            wait_for(lambda: "waiting to lead" in standby.log.read_text(), timeout=60)

            stopped_at = time.monotonic()
            leader.signal(stop)
            new = wait_for(
                lambda: (h := holder(troupe.api)) and not h.startswith(leader_name[:4]) and h,
                timeout=30,
                what="the standby to lead",
            )
            handover = time.monotonic() - stopped_at
            wait_until_ended(troupe, ["ha-one", "ha-two"], timeout=180)
            expected = {
                ("Normal", "StartedLeading", leader_name, f"{leader_name} became leader"),
                ("Normal", "LeaderChanged", new, f"{leader_name} holds the Lease"),
                ("Normal", "StartedLeading", new, f"{new} became leader"),
            }
            if stop == signal.SIGTERM:  # posted before the process exits
                released = f"{leader_name} stopped leading, releasing the Lease"
                expected.add(("Normal", "StoppedLeading", leader_name, released))
            wait_for(lambda: expected <= lease_events(troupe.api), what="the Lease's Events")
    assert new.startswith("op-")
    assert handover < (2 if stop == signal.SIGTERM else 6), handover
    assert_every_run_clean(troupe, stub, ["ha-one", "ha-two"])
