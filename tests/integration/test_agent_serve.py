"""Agents as services end to end: the real operator turns an Agent into a Deployment and Service.

The emulator has no Deployment controller: the tests write a Deployment's
status themselves, as its controller would, and wait for the Agent's.
"""

from __future__ import annotations

from typing import Any

import kubernetes
import pytest
from kubernetes.aio import client as aio_client

from tests.integration.troupe_driver import GROUP, VERSION, Troupe
from tests.support.waiting import wait_for
from troupe_operator.controller.agents import AgentKube
from troupe_operator.controller.handlers import api_client
from troupe_operator.controller.kube import ApiError
from troupe_operator.main import USER_AGENT

SPEC_HASH = "troupe.dev/spec-hash"


def serving_agent(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Agent",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "role": "executor",
            "replicas": 2,
            "model": {"name": "gpt-4o-mini", "apiKeySecretRef": {"name": "llm", "key": "api-key"}},
            "resources": {"requests": {"cpu": "100m"}, "limits": {"memory": "256Mi"}},
            **spec,
        },
    }


def secret(name: str = "llm", key: str = "api-key") -> kubernetes.client.V1Secret:
    return kubernetes.client.V1Secret(
        metadata=kubernetes.client.V1ObjectMeta(name=name), string_data={key: "sk-test"}
    )


def apps(troupe: Troupe) -> kubernetes.client.AppsV1Api:
    return kubernetes.client.AppsV1Api(troupe.api)


def read(troupe: Troupe, read_call: Any, name: str) -> dict[str, Any] | None:
    try:
        body: dict[str, Any] = troupe.api.sanitize_for_serialization(read_call(name, "default"))
    except kubernetes.client.ApiException as error:
        if error.status == 404:
            return None
        raise
    return body


def deployment(troupe: Troupe, name: str) -> dict[str, Any] | None:
    return read(troupe, apps(troupe).read_namespaced_deployment, name)


def agent_status(troupe: Troupe, name: str) -> dict[str, Any]:
    body = troupe.custom.get_namespaced_custom_object(GROUP, VERSION, "default", "agents", name)
    status: dict[str, Any] = body.get("status") or {}
    return status


def wait_status(troupe: Troupe, name: str, what: str, **wanted: Any) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        status = agent_status(troupe, name)
        return status if all(status.get(k) == v for k, v in wanted.items()) else None

    return wait_for(reached, timeout=30, interval=0.1, what=what)


def wait_condition(troupe: Troupe, name: str, kind: str, **wanted: str) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        found = {c["type"]: c for c in agent_status(troupe, name).get("conditions") or ()}
        condition = found.get(kind) or {}
        return condition if all(condition.get(k) == v for k, v in wanted.items()) else None

    return wait_for(reached, timeout=30, interval=0.1, what=f"{kind} {wanted} on {name}")


def template_hash(troupe: Troupe, name: str) -> str | None:
    body = deployment(troupe, name)
    return None if body is None else body["spec"]["template"]["metadata"]["annotations"][SPEC_HASH]


def patch_spec(troupe: Troupe, name: str, spec: dict[str, Any]) -> None:
    troupe.custom.patch_namespaced_custom_object(
        GROUP, VERSION, "default", "agents", name, {"spec": spec}
    )


def roll_out(troupe: Troupe, name: str, ready: int) -> None:
    """Play the Deployment controller: the pods of the current template are ``ready``."""
    body = deployment(troupe, name)
    assert body is not None
    status = {
        "observedGeneration": body["metadata"]["generation"],
        "replicas": ready,
        "readyReplicas": ready,
        "availableReplicas": ready,
        "updatedReplicas": ready,
    }
    apps(troupe).patch_namespaced_deployment_status(name, "default", {"status": status})


def test_an_agent_with_replicas_becomes_a_deployment_and_a_service(troupe: Troupe) -> None:
    troupe.core.create_namespaced_secret("default", secret())
    troupe.apply(serving_agent("writer"))
    with troupe.operator():
        body = wait_for(lambda: deployment(troupe, "writer"), timeout=30, what="the Deployment")
        status = wait_status(troupe, "writer", "Progressing", phase="Progressing")
        assert status["ready"] == "0/2" and status["observedGeneration"] == 1

        roll_out(troupe, "writer", 2)
        status = wait_status(troupe, "writer", "Ready", phase="Ready")
        assert (status["readyReplicas"], status["replicas"], status["ready"]) == (2, 2, "2/2")

    pod = body["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert body["spec"]["replicas"] == 2
    assert container["args"][0] == "serve"
    assert {
        "name": "TROUPE_API_KEY",
        "valueFrom": {"secretKeyRef": {"name": "llm", "key": "api-key"}},
    } in container["env"]
    assert container["resources"] == {"requests": {"cpu": "100m"}, "limits": {"memory": "256Mi"}}
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["serviceAccountName"] == "writer"
    service = read(troupe, troupe.core.read_namespaced_service, "writer")
    assert service is not None
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["selector"] == body["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["port"] == 8080


@pytest.mark.parametrize(
    "change", [{"image": "example.com/agent:2"}, {"model": {"temperature": 1.5}}]
)
def test_a_spec_change_rolls_the_pods(troupe: Troupe, change: dict[str, Any]) -> None:
    troupe.apply(serving_agent("writer", model={"name": "m"}))
    with troupe.operator():
        first = wait_for(lambda: template_hash(troupe, "writer"), timeout=30, what="a Deployment")
        patch_spec(troupe, "writer", change)
        wait_for(
            lambda: template_hash(troupe, "writer") not in (None, first),
            timeout=30,
            what="a new pod template",
        )
        patch_spec(troupe, "writer", {"replicas": 0})
        wait_for(lambda: deployment(troupe, "writer") is None, timeout=30, what="no Deployment")
        status = wait_status(troupe, "writer", "Ready with no pods", phase="Ready", replicas=0)
        assert status["ready"] == "0/0"


def test_deleting_the_agent_removes_what_it_owns(troupe: Troupe) -> None:
    troupe.apply(serving_agent("writer", model={"name": "m"}))
    rbac = kubernetes.client.RbacAuthorizationV1Api(troupe.api)
    with troupe.operator():
        wait_for(lambda: deployment(troupe, "writer"), timeout=30, what="the Deployment")
        bindings = rbac.list_cluster_role_binding(label_selector="troupe.dev/agent=writer").items
        assert [b.role_ref.name for b in bindings] == ["system:auth-delegator"]
        troupe.custom.delete_namespaced_custom_object(GROUP, VERSION, "default", "agents", "writer")

        def all_gone() -> bool:
            return (
                deployment(troupe, "writer") is None
                and read(troupe, troupe.core.read_namespaced_service, "writer") is None
                and read(troupe, troupe.core.read_namespaced_service_account, "writer") is None
                and read(troupe, rbac.read_namespaced_role_binding, "writer") is None
                and read(troupe, rbac.read_namespaced_role, "writer") is None
                and not rbac.list_cluster_role_binding(
                    label_selector="troupe.dev/agent=writer"
                ).items
            )

        wait_for(all_gone, timeout=30, what="every child of the Agent to go")


def test_a_missing_secret_is_named_and_the_agent_recovers_when_it_appears(troupe: Troupe) -> None:
    troupe.apply(serving_agent("writer"))
    with troupe.operator():
        status = wait_status(troupe, "writer", "Error", phase="Error")
        ready = {c["type"]: c for c in status["conditions"]}["Ready"]
        assert (ready["status"], ready["reason"]) == ("False", "SecretNotFound")
        assert "Secret llm" in ready["message"] and "api-key" in ready["message"]
        assert deployment(troupe, "writer") is None
        assert "SecretNotFound" in troupe.event_reasons("writer")

        troupe.core.create_namespaced_secret("default", secret(key="other"))
        status = wait_for(
            lambda: (
                (s := agent_status(troupe, "writer"))["conditions"][0]["reason"]
                == "SecretKeyNotFound"
                and s
            ),
            timeout=30,
            what="the missing key to be named",
        )
        assert status["conditions"][0]["message"] == "Secret llm has no key api-key"

        troupe.core.patch_namespaced_secret("llm", "default", {"stringData": {"api-key": "sk"}})
        wait_for(lambda: deployment(troupe, "writer"), timeout=30, what="the Deployment")
        wait_status(troupe, "writer", "Progressing", phase="Progressing")


def test_a_team_names_its_missing_member_and_wakes_when_the_member_changes(
    troupe: Troupe,
) -> None:
    lead = serving_agent("lead", role="supervisor", members=["scout"], replicas=1, model={})
    troupe.apply(lead)
    with troupe.operator(resync_seconds=300):  # only the member's events can wake the team
        missing = wait_condition(troupe, "lead", "MembersReady", reason="MemberNotFound")
        assert missing["status"] == "False" and "scout" in missing["message"]
        assert agent_status(troupe, "lead")["phase"] == "Degraded"
        assert deployment(troupe, "lead") is not None
        assert "MemberNotFound" in troupe.event_reasons("lead")

        troupe.apply(serving_agent("scout", replicas=1, model={}))
        wait_condition(troupe, "lead", "MembersReady", status="True", reason="MembersServed")
        patch_spec(troupe, "scout", {"replicas": 0})
        idle = wait_condition(troupe, "lead", "MembersReady", reason="MemberNotServed")
        assert "scout" in idle["message"]


def test_a_condition_the_supervisor_wrote_survives_the_operators_status_writes(
    troupe: Troupe,
) -> None:
    model_ready = {"type": "ModelReady", "status": "True", "reason": "ModelAnswered"}
    troupe.core.create_namespaced_secret("default", secret())
    troupe.apply(serving_agent("writer"))

    def write_as_the_supervisor() -> bool:
        """A merge patch guarded by the resourceVersion read, as the supervisor pod writes."""
        body = troupe.custom.get_namespaced_custom_object(
            GROUP, VERSION, "default", "agents", "writer"
        )
        conditions = [*body["status"]["conditions"], {**model_ready, "message": "ok"}]
        patch = {
            "metadata": {"resourceVersion": body["metadata"]["resourceVersion"]},
            "status": {"supervisor": "writer-0", "conditions": conditions},
        }
        try:
            troupe.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, "default", "agents", "writer", patch
            )
        except kubernetes.client.ApiException as error:
            if error.status == 409:
                return False
            raise
        return True

    with troupe.operator():
        wait_status(troupe, "writer", "Progressing", phase="Progressing")
        wait_for(write_as_the_supervisor, timeout=30, what="the supervisor's status write")
        roll_out(troupe, "writer", 2)
        status = wait_status(troupe, "writer", "Ready", phase="Ready")

    assert [c["type"] for c in status["conditions"]] == ["Ready", "Progressing", "ModelReady"]
    assert status["conditions"][-1] == {**model_ready, "message": "ok"}
    assert status["supervisor"] == "writer-0"


async def test_the_operators_status_write_fails_retryably_once_the_agent_changed(
    troupe: Troupe,
) -> None:
    troupe.apply(serving_agent("writer", replicas=0, model={}))
    body = troupe.custom.get_namespaced_custom_object(GROUP, VERSION, "default", "agents", "writer")
    patch_spec(troupe, "writer", {"replicas": 1})
    api = api_client(aio_client.Configuration(host=troupe.api.configuration.host), USER_AGENT)
    async with api:
        kube = AgentKube(api, timeout_seconds=5)
        with pytest.raises(ApiError) as refused:
            await kube.patch_agent_status(
                "default", "writer", body["metadata"]["resourceVersion"], {"phase": "Ready"}
            )
    assert (refused.value.status, refused.value.transient) == (409, True)
    assert "phase" not in agent_status(troupe, "writer")
