"""An Agent's pods elect a supervisor that alone writes the pods' view into the Agent's status.

The real operator writes the Deployment and the pods' identity and Role; two
serve-mode processes run from that Deployment (``agent_pods``) with the
ServiceAccount's token, so every call they make is checked by the emulator's
RBAC against the operator's Role.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import kubernetes
import pytest

from tests.integration.agent_pods import AgentPod, AgentPods, agent_pods
from tests.integration.troupe_driver import GROUP, VERSION, Troupe, agent
from tests.support.emulator import EmulatedCluster
from tests.support.openai_stub import OpenAIStub
from tests.support.waiting import wait_for

LEASE = "team-supervisor"


@pytest.fixture
def pods(
    emulator: EmulatedCluster, kube_api: kubernetes.client.ApiClient, tmp_path: Any
) -> Iterator[AgentPods]:
    yield from agent_pods(emulator, kube_api, tmp_path)


def agent_status(troupe: Troupe, name: str) -> dict[str, Any]:
    body = troupe.custom.get_namespaced_custom_object(GROUP, VERSION, "default", "agents", name)
    return dict(body.get("status") or {})


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or () if c["type"] == kind), {})


def elected(*candidates: AgentPod) -> AgentPod | None:
    """The pod every candidate names as holder, when exactly that one says it leads."""
    views = [pod.supervisor() for pod in candidates]
    holders = {view["holder"] for view in views}
    leading = [pod for pod, view in zip(candidates, views, strict=True) if view["leading"]]
    if len(holders) == 1 and len(leading) == 1 and leading[0].name in holders:
        return leading[0]
    return None


def test_two_pods_elect_one_supervisor_and_the_status_follows_the_lease(
    troupe: Troupe, pods: AgentPods, openai_stub: OpenAIStub
) -> None:
    team = agent("team", openai_stub.base_url)
    team["spec"]["replicas"] = 2
    troupe.apply(team)
    with troupe.operator():
        wait_for(
            lambda: _deployment_exists(troupe),
            timeout=60,
            what="the operator to write the Deployment",
        )
        first, second = pods.start("team", "team-a"), pods.start("team", "team-b")
        holder = wait_for(lambda: elected(first, second), timeout=60, what="one supervisor")
        survivor = second if holder is first else first

        status = wait_for(
            lambda: (s := agent_status(troupe, "team")).get("supervisor") == holder.name and s,
            timeout=60,
            what="status.supervisor to name the holder",
        )
        assert status["leaseTransitions"] == 0
        assert status["calls"]["reportedBy"] == holder.name
        assert condition(status, "ModelReady")["reason"] == "ModelReachable"
        assert condition(status, "Ready"), "the operator's conditions are kept beside ModelReady"

        holder.kill()
        assert (
            wait_for(lambda: elected(survivor), timeout=60, what="the survivor to lead") is survivor
        )
        status = wait_for(
            lambda: (s := agent_status(troupe, "team")).get("supervisor") == survivor.name and s,
            timeout=60,
            what="status.supervisor to follow the Lease",
        )
        assert status["leaseTransitions"] == 1
        assert survivor.supervisor()["leaseTransitions"] == 1

    metrics = httpx.get(f"{survivor.url}/metrics").text
    assert f'leader_election_master_status{{name="{LEASE}"}} 1.0' in metrics
    events = troupe.core.list_namespaced_event("default").items
    started = {e.reporting_instance for e in events if e.reason == "StartedLeading"}
    assert started == {"team-a", "team-b"}
    assert all(e.involved_object.name == LEASE for e in events if e.reason == "StartedLeading")


def _deployment_exists(troupe: Troupe) -> bool:
    apps = kubernetes.client.AppsV1Api(troupe.api)
    return any(d.metadata.name == "team" for d in apps.list_namespaced_deployment("default").items)
