"""The team endpoint: a supervisor Agent's elected pod runs the loop over its members' Services.

Four serve-mode processes from the operator's Deployments (``agent_pods``):
members ``math`` and ``writer``, and two pods of the supervisor ``team``. The
caller is a ServiceAccount allowed to invoke the three Agents; the stub
answers the supervisor's decisions with tool calls, by the turns it is shown.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import kubernetes
import pytest

from tests.integration.agent_pods import AgentPod, AgentPods, agent_pods
from tests.integration.test_agent_supervisor import elected
from tests.integration.troupe_driver import GROUP, VERSION, Troupe, agent
from tests.support.emulator import EmulatedCluster
from tests.support.openai_stub import Fault, OpenAIStub, ToolCall
from tests.support.waiting import wait_for

# Four agent processes, each importing LangChain, elect and serve before the first call: on
# a loaded machine that outlasts pytest's default 120 s. Each wait inside has its own bound.
pytestmark = pytest.mark.timeout(360)

RBAC = "rbac.authorization.k8s.io"
REQUEST = "What is six times seven, in a sentence?"
LOOPING = "Keep asking math."


def _member_and_turns(body: dict[str, Any]) -> tuple[str, int]:
    """Whose call this is (``team`` for a decision) and, for a decision, the turns it saw."""
    system = str(body["messages"][0]["content"])
    if "tools" not in body:
        return ("math" if "You are math" in system else "writer"), 0
    user = str(body["messages"][-1]["content"])
    return "team", 0 if "(none yet)" in user else user.count(" was asked: ")


def scripted_team(body: dict[str, Any]) -> str | ToolCall:
    """Math answers 42, the writer a sentence; the supervisor asks math, then the writer, then
    finishes; for the ``LOOPING`` request it asks math forever."""
    who, turns = _member_and_turns(body)
    if who == "math":
        return "42"
    if who == "writer":
        return "Six times seven is forty-two."
    if LOOPING in str(body["messages"][-1]["content"]):
        return ToolCall("delegate", {"member": "math", "instruction": "again"})
    if turns == 0:
        return ToolCall("delegate", {"member": "math", "instruction": "compute 6*7"})
    if turns == 1:
        return ToolCall("delegate", {"member": "writer", "instruction": "say 42 in a sentence"})
    return ToolCall("finish", {"answer": "Six times seven is forty-two."})


def _agents(base_url: str, max_iterations: int) -> list[dict[str, Any]]:
    math, writer, team = (agent(name, base_url) for name in ("math", "writer", "team"))
    math["spec"].update(replicas=1, systemPrompt="You are math.")
    writer["spec"].update(replicas=1, systemPrompt="You are writer.")
    team["spec"].update(
        role="supervisor", replicas=2, members=["math", "writer"], maxIterations=max_iterations
    )
    return [math, writer, team]


def _allow_caller(api: kubernetes.client.ApiClient) -> None:
    """ServiceAccount ``caller`` may invoke the three Agents; the emulator lacks the bootstrap
    ``system:auth-delegator`` the pods review callers with, so it is made here."""
    core, rbac = kubernetes.client.CoreV1Api(api), kubernetes.client.RbacAuthorizationV1Api(api)
    core.create_namespaced_service_account("default", {"metadata": {"name": "caller"}})
    invoke = {
        "apiGroups": [GROUP],
        "resources": ["agents/invoke"],
        "resourceNames": ["team", "math", "writer"],
        "verbs": ["create"],
    }
    rbac.create_namespaced_role("default", {"metadata": {"name": "caller"}, "rules": [invoke]})
    rbac.create_namespaced_role_binding(
        "default",
        {
            "metadata": {"name": "caller"},
            "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": "caller"},
            "subjects": [{"kind": "ServiceAccount", "name": "caller"}],
        },
    )
    reviews = [
        {"apiGroups": [f"{kind}.k8s.io"], "resources": [f"{review}s"], "verbs": ["create"]}
        for kind, review in (
            ("authentication", "tokenreview"),
            ("authorization", "subjectaccessreview"),
        )
    ]
    rbac.create_cluster_role({"metadata": {"name": "system:auth-delegator"}, "rules": reviews})


@pytest.fixture
def pods(
    emulator: EmulatedCluster, kube_api: kubernetes.client.ApiClient, tmp_path: Any
) -> Iterator[AgentPods]:
    yield from agent_pods(emulator, kube_api, tmp_path)


@pytest.fixture
def openai_stub() -> Iterator[OpenAIStub]:
    with OpenAIStub(reply=scripted_team) as stub:
        yield stub


@pytest.fixture
def token(troupe: Troupe) -> str:
    _allow_caller(troupe.api)
    request = {"spec": {"audiences": ["troupe.dev/agent"], "expirationSeconds": 3600}}
    granted = troupe.core.create_namespaced_service_account_token("caller", "default", request)
    return str(granted.status.token)


def _team(troupe: Troupe, pods: AgentPods, stub: OpenAIStub, max_iterations: int) -> list[AgentPod]:
    """The team's two pods, once one of them is its elected supervisor."""
    troupe.apply(*_agents(stub.base_url, max_iterations))
    apps = kubernetes.client.AppsV1Api(troupe.api)
    wait_for(
        lambda: len(apps.list_namespaced_deployment("default").items) == 3,
        timeout=60,
        what="the operator to write the three Deployments",
    )
    members = {name: pods.start(name, f"{name}-0") for name in ("math", "writer")}
    team = [pods.start("team", "team-a", members), pods.start("team", "team-b", members)]
    wait_for(lambda: elected(*team), timeout=60, what="the team to elect its supervisor")
    return team


def _invoke(pod: AgentPod, token: str, conversation: str, prompt: str = REQUEST) -> httpx.Response:
    return httpx.post(
        f"{pod.url}/v1/invoke",
        json={"prompt": prompt, "conversationId": conversation},
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )


def _stub_calls(stub: OpenAIStub) -> list[tuple[str, int]]:
    return [_member_and_turns(r.body or {}) for r in stub.chat_requests]


def test_the_supervisor_answers_in_three_turns_and_stops_at_max_iterations(
    troupe: Troupe, pods: AgentPods, openai_stub: OpenAIStub, token: str
) -> None:
    with troupe.operator():
        team = _team(troupe, pods, openai_stub, max_iterations=3)
        standby = next(pod for pod in team if not pod.supervisor()["leading"])
        response = _invoke(standby, token, "c-1")  # handed to the supervisor

        assert response.status_code == 200, response.text
        reply = response.json()
        assert reply["output"] == "Six times seven is forty-two."
        assert [(t["member"], t["output"]) for t in reply["turns"]] == [
            ("math", "42"),
            ("writer", "Six times seven is forty-two."),
        ]
        assert reply["iterations"] == 3
        assert _stub_calls(openai_stub) == [
            ("team", 0),
            ("math", 0),
            ("team", 1),
            ("writer", 0),
            ("team", 2),
        ]
        assert reply["usage"]["totalTokens"] == sum(openai_stub.billed)

        response = _invoke(team[0], token, "c-2", LOOPING)
        assert response.status_code == 422, response.text
        assert response.json()["reason"] == "MaxIterations"
        assert "maxIterations=3" in response.json()["error"]
        assert len(response.json()["turns"]) == 3


def test_a_new_supervisor_resumes_the_conversation_after_the_last_completed_turn(
    troupe: Troupe, pods: AgentPods, openai_stub: OpenAIStub, token: str
) -> None:
    openai_stub.inject(Fault(), Fault(), Fault.slow(30))  # the second decision hangs
    with troupe.operator():
        team = _team(troupe, pods, openai_stub, max_iterations=5)
        holder = next(pod for pod in team if pod.supervisor()["leading"])
        survivor = next(pod for pod in team if pod is not holder)
        first = threading.Thread(target=_invoke_ignoring_errors, args=(holder, token, "c-1"))
        first.start()
        wait_for(
            lambda: _stub_calls(openai_stub)[2:] == [("team", 1)], timeout=60, what="turn 1 done"
        )
        wait_for(lambda: _checkpointed_turns(troupe) == 1, timeout=60, what="turn 1 checkpointed")
        holder.kill()
        first.join(30)
        wait_for(lambda: elected(survivor), timeout=60, what="the survivor to lead")

        response = _invoke(survivor, token, "c-1")

    assert response.status_code == 200, response.text
    assert response.json()["resumedTurns"] == 1
    assert [t["member"] for t in response.json()["turns"]] == ["math", "writer"]
    calls = _stub_calls(openai_stub)
    assert calls.count(("team", 0)) == 1, calls
    assert calls.count(("math", 0)) == 1, calls


def _invoke_ignoring_errors(pod: AgentPod, token: str, conversation: str) -> None:
    with contextlib.suppress(httpx.TransportError):
        _invoke(pod, token, conversation)


def _checkpointed_turns(troupe: Troupe) -> int:
    items = troupe.custom.list_namespaced_custom_object(GROUP, VERSION, "default", "conversations")[
        "items"
    ]
    return len(items[0]["spec"]["turns"]) if items else 0
