"""Two operator processes, one Lease: only the holder reconciles, and the standby takes over.

Both run as `kopf run -m troupe_operator.main` against the emulator (leases of 2 s, renewed
every 0.2 s, deadline 1 s). The leader is stopped mid-run, gracefully (SIGTERM, the Lease is
released) or by SIGKILL (it expires); the standby must finish every run with one Job, one
attempt and one model request per task. Each replica posts the transitions it sees as Events
on the Lease, and serves `leader_election_master_status`, sampled every 50 ms: 1 on the
leader and 0 on the standby until the stop, then 1 on the new leader.
"""

from __future__ import annotations

import contextlib
import pathlib
import re
import signal
import threading
import time
from typing import Any

import httpx
import kubernetes
import pytest

from tests.integration.test_workflow_faults import (
    assert_every_run_clean,
    reply,
    runs,
    wait_until_ended,
)
from tests.integration.troupe_driver import OperatorProcess, Troupe, agent
from tests.support.openai_stub import Fault, OpenAIStub
from tests.support.waiting import wait_for

GAUGE = re.compile(r'^leader_election_master_status\{name="troupe-operator"\} (\S+)$', re.M)


def holder(api: kubernetes.client.ApiClient) -> str:
    coordination = kubernetes.client.CoordinationV1Api(api)
    with contextlib.suppress(kubernetes.client.ApiException):
        lease: Any = coordination.read_namespaced_lease("troupe-operator", "default")
        return str(lease.spec.holder_identity or "")
    return ""


class GaugeSampler:
    """``leader_election_master_status`` of each process, scraped every 50 ms in a thread."""

    def __init__(self, *processes: OperatorProcess) -> None:
        self.processes = processes
        self.samples: list[tuple[float, tuple[float | None, ...]]] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._done.wait(0.05):
            values = tuple(map(master_status, self.processes))
            self.samples.append((time.monotonic(), values))  # stamped once scraped

    def stop(self) -> None:
        self._done.set()
        self._thread.join(5)

    def before(self, moment: float) -> list[tuple[float | None, ...]]:
        return [values for at, values in self.samples if at < moment]


def master_status(process: OperatorProcess) -> float | None:
    """The process's gauge for the Lease; None while it serves no metrics."""
    try:
        text = httpx.get(f"http://127.0.0.1:{process.metrics_port}/metrics", timeout=5).text
    except httpx.TransportError:
        return None
    found = GAUGE.search(text)
    return float(found.group(1)) if found else None


def lease_events(api: kubernetes.client.ApiClient) -> set[tuple[str, str, str, str]]:
    """(type, reason, reporting instance, message) of each Event on the operator's Lease."""
    events = kubernetes.client.CoreV1Api(api).list_namespaced_event("default").items
    return {
        (e.type, e.reason, e.reporting_instance, e.message)
        for e in events
        if e.involved_object.kind == "Lease" and e.involved_object.name == "troupe-operator"
    }


@pytest.mark.timeout(480)  # the sum of its waits: under load it outlasts the default 120 s
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
            gauges = GaugeSampler(leader, standby)
            wait_for(lambda: troupe.jobs("ha-one"), timeout=60, what="the first Jobs")
            wait_for(lambda: "waiting to lead" in standby.log.read_text(), timeout=60)
            wait_for(lambda: gauges.before(time.monotonic())[-1:] == [(1.0, 0.0)], what="gauges")

            stopped_at = time.monotonic()
            leader.signal(stop)
            new = wait_for(
                lambda: (h := holder(troupe.api)) and not h.startswith(leader_name[:4]) and h,
                timeout=30,
                what="the standby to lead",
            )
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
            wait_for(
                lambda: master_status(standby) == 1.0, timeout=60, what="the new leader's gauge"
            )
            gauges.stop()
    before_stop = gauges.before(stopped_at)
    assert all(standby_value in (None, 0.0) for _, standby_value in before_stop), before_stop
    scraped = [leader_value for leader_value, _ in before_stop if leader_value is not None]
    assert scraped[-1] == 1.0, before_stop  # a scrape may time out under load: None
    assert new.startswith("op-")
    assert_every_run_clean(troupe, stub, ["ha-one", "ha-two"])
