"""The Agent serve core: from an Agent and its observed children to writes, deletes and status."""

from __future__ import annotations

import copy
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from troupe_operator.agents import AgentRef, Child, Decision, Observation, ServeSettings, reconcile
from troupe_operator.agents.children import SPEC_HASH_ANNOTATION, desired
from troupe_operator.api import AgentPhase, AgentSpec, AgentStatus
from troupe_operator.workflow import InvalidSpec

AGENT = AgentRef("team", "writer", "uid-1")
SETTINGS = ServeSettings("ghcr.io/troupe-dev/troupe-agent:test", ("troupe-agent",))
NOW = datetime(2025, 1, 1, tzinfo=UTC)
KEYED = {"model": {"apiKeySecretRef": {"name": "openai", "key": "api-key"}}}


def spec(**fields: Any) -> AgentSpec:
    return AgentSpec.model_validate({"replicas": 2, **KEYED, **fields})


def observe(agent_spec: AgentSpec | InvalidSpec, **fields: Any) -> Observation:
    defaults: dict[str, Any] = {
        "agent": AGENT,
        "generation": 3,
        "spec": agent_spec,
        "status": AgentStatus(),
        "secret_keys": frozenset({"api-key"}),
        "children": {},
        "settings": SETTINGS,
        "now": NOW,
    }
    return Observation(**{**defaults, **fields})


def applied(decision: Decision, rolled: dict[str, Any] | None = None) -> dict[Child, Any]:
    """The children as the server would hold them after the decision's writes."""
    children = {}
    for write in decision.writes:
        body = copy.deepcopy(write.body)
        body["metadata"].setdefault("resourceVersion", "1")
        body["metadata"].setdefault("generation", 1)
        if write.child is Child.DEPLOYMENT and rolled is not None:
            body["status"] = {"observedGeneration": 1, **rolled}
        children[write.child] = body
    return children


def ready(count: int) -> dict[str, Any]:
    return {
        "replicas": count,
        "readyReplicas": count,
        "availableReplicas": count,
        "updatedReplicas": count,
    }


def container(body: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = body["spec"]["template"]["spec"]["containers"][0]
    return result


def test_a_serving_agent_gets_every_child_in_order_and_owned() -> None:
    decision = reconcile(observe(spec()))
    assert [w.child for w in decision.writes] == list(Child)
    assert all(w.create for w in decision.writes)
    for write in decision.writes:
        metadata = write.body["metadata"]
        assert metadata["labels"]["app.kubernetes.io/name"] == "troupe-agent"
        assert metadata["labels"]["app.kubernetes.io/instance"] == "writer"
        assert metadata["labels"]["troupe.dev/agent"] == "writer"
        if write.child.namespaced:
            assert metadata["ownerReferences"][0]["uid"] == "uid-1"
        else:
            assert "ownerReferences" not in metadata
            assert metadata["annotations"]["troupe.dev/agent"] == "team/writer"
    assert decision.status.phase is AgentPhase.PROGRESSING
    assert decision.status.ready == "0/2" and decision.resync


def test_the_deployment_runs_serve_mode_locked_down_with_the_key_from_the_secret() -> None:
    body = desired(AGENT, spec(resources={"limits": {"memory": "512Mi"}}), SETTINGS)
    deployment = body[Child.DEPLOYMENT]
    pod = deployment["spec"]["template"]["spec"]
    agent = container(deployment)
    assert deployment["spec"]["replicas"] == 2
    assert agent["args"][0] == "serve" and agent["image"] == SETTINGS.image
    keys = [e for e in agent["env"] if e["name"] == "TROUPE_API_KEY"]
    assert keys == [
        {
            "name": "TROUPE_API_KEY",
            "valueFrom": {"secretKeyRef": {"name": "openai", "key": "api-key"}},
        }
    ]
    assert agent["resources"] == {"requests": {}, "limits": {"memory": "512Mi"}}
    assert agent["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert agent["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert agent["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert agent["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert pod["serviceAccountName"] == "writer" and pod["automountServiceAccountToken"]
    service = body[Child.SERVICE]["spec"]
    assert service["type"] == "ClusterIP"
    assert service["selector"] == deployment["spec"]["selector"]["matchLabels"]


def test_the_pods_may_touch_only_their_lease_and_their_agents_status() -> None:
    body = desired(AGENT, spec(), SETTINGS)
    assert body[Child.ROLE]["rules"] == [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": ["writer-supervisor"],
            "verbs": ["get", "update"],
        },
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["troupe.dev"],
            "resources": ["agents/status"],
            "resourceNames": ["writer"],
            "verbs": ["get", "patch"],
        },
    ]
    binding = body[Child.CLUSTER_ROLE_BINDING]
    assert binding["roleRef"]["name"] == "system:auth-delegator"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "writer", "namespace": "team"}
    ]


@pytest.mark.parametrize(
    ("change", "rolls"),
    [
        ({"model": {**KEYED["model"], "temperature": 0.9}}, True),
        ({"image": "example.com/agent:2"}, True),
        ({"systemPrompt": "Be brief."}, True),
        ({"replicas": 5}, False),
    ],
)
def test_a_spec_change_rolls_the_pods_and_scaling_does_not(
    change: dict[str, Any], rolls: bool
) -> None:
    children = applied(reconcile(observe(spec())), ready(2))
    steady = reconcile(observe(spec(), children=children))
    assert steady.writes == [] and steady.status.phase is AgentPhase.READY

    decision = reconcile(observe(spec(**change), children=children))
    assert [w.child for w in decision.writes] == [Child.DEPLOYMENT]
    write = decision.writes[0]
    assert not write.create and write.body["metadata"]["resourceVersion"] == "1"
    before = children[Child.DEPLOYMENT]["spec"]["template"]["metadata"]["annotations"]
    after = write.body["spec"]["template"]["metadata"]["annotations"]
    assert (before[SPEC_HASH_ANNOTATION] != after[SPEC_HASH_ANNOTATION]) == rolls
    assert "status" not in write.body


def test_server_defaults_cause_no_write() -> None:
    children = applied(reconcile(observe(spec())), ready(2))
    children[Child.SERVICE]["spec"]["clusterIP"] = "10.0.0.7"
    children[Child.DEPLOYMENT]["spec"]["strategy"] = {"type": "RollingUpdate"}
    container(children[Child.DEPLOYMENT])["imagePullPolicy"] = "IfNotPresent"
    assert reconcile(observe(spec(), children=children)).writes == []


def test_replicas_zero_deletes_every_child_and_the_agent_stays_usable() -> None:
    children = applied(reconcile(observe(spec())), ready(2))
    decision = reconcile(observe(spec(replicas=0), children=children))
    assert decision.writes == []
    assert decision.deletes == [(child, children[child]["metadata"]["name"]) for child in children]
    assert decision.status.phase is AgentPhase.READY
    assert (decision.status.replicas, decision.status.ready) == (0, "0/0")
    assert not decision.resync


@pytest.mark.parametrize(
    ("keys", "reason", "words"),
    [
        (None, "SecretNotFound", "Secret openai (key api-key) not found"),
        (frozenset({"token"}), "SecretKeyNotFound", "Secret openai has no key api-key"),
    ],
)
def test_a_missing_secret_or_key_holds_the_pods_and_names_them(
    keys: frozenset[str] | None, reason: str, words: str
) -> None:
    children = applied(reconcile(observe(spec())), ready(2))
    for observed in ({}, children):
        decision = reconcile(observe(spec(image="new:1"), secret_keys=keys, children=observed))
        assert Child.DEPLOYMENT not in [w.child for w in decision.writes]
        assert decision.deletes == []
        assert decision.status.phase is AgentPhase.ERROR and decision.resync
        condition = decision.status.conditions[0]
        assert (condition.type, condition.status, condition.reason) == ("Ready", "False", reason)
        assert condition.message == words
        assert [(e.type, e.reason) for e in decision.events] == [("Warning", reason)]
    again = reconcile(observe(spec(), secret_keys=keys, status=decision.status))
    assert again.events == []


@pytest.mark.parametrize(
    ("deployment_status", "previous", "phase", "reason"),
    [
        ({}, None, AgentPhase.PROGRESSING, "RollingOut"),
        (
            {"readyReplicas": 1, "availableReplicas": 1, "updatedReplicas": 2},
            None,
            AgentPhase.PROGRESSING,
            "RollingOut",
        ),
        (ready(2), None, AgentPhase.READY, "DeploymentAvailable"),
        (
            {"readyReplicas": 1, "availableReplicas": 1, "updatedReplicas": 2},
            AgentPhase.READY,
            AgentPhase.DEGRADED,
            "ReplicasUnavailable",
        ),
        (
            {
                "conditions": [
                    {
                        "type": "Progressing",
                        "status": "False",
                        "reason": "ProgressDeadlineExceeded",
                        "message": "stuck",
                    }
                ]
            },
            None,
            AgentPhase.DEGRADED,
            "ProgressDeadlineExceeded",
        ),
        ({**ready(2), "observedGeneration": 0}, None, AgentPhase.PROGRESSING, "RollingOut"),
    ],
)
def test_the_status_follows_the_deployment(
    deployment_status: dict[str, Any],
    previous: AgentPhase | None,
    phase: AgentPhase,
    reason: str,
) -> None:
    children = applied(reconcile(observe(spec())), deployment_status)
    status = AgentStatus(phase=previous)
    decision = reconcile(observe(spec(), children=children, status=status))
    assert (decision.status.phase, decision.status.conditions[0].reason) == (phase, reason)
    assert decision.status.observed_generation == 3
    ready_count = deployment_status.get("readyReplicas", 0)
    assert decision.status.ready == f"{ready_count}/2"


def test_a_child_of_someone_else_is_never_overwritten() -> None:
    children = applied(reconcile(observe(spec())))
    children[Child.SERVICE]["metadata"]["ownerReferences"] = []
    decision = reconcile(observe(spec(), children=children))
    assert decision.writes == [] and decision.deletes == []
    assert decision.status.phase is AgentPhase.ERROR
    assert decision.status.conditions[0].reason == "ChildNotOwned"


def test_a_refused_write_and_an_invalid_spec_are_errors_with_the_words() -> None:
    refused = reconcile(observe(spec(), refusals={Child.DEPLOYMENT: "exceeded quota: pods"}))
    assert refused.status.conditions[0].reason == "DeploymentRefused"
    assert refused.status.conditions[0].message == "exceeded quota: pods"
    invalid = reconcile(observe(InvalidSpec(["replicas: must be at most 20"])))
    assert invalid.writes == [] and invalid.status.phase is AgentPhase.ERROR
    assert invalid.status.conditions[0].reason == "InvalidSpec"


def test_a_long_or_dotted_name_still_makes_valid_names_and_labels() -> None:
    agent = AgentRef("team", "a." + "x" * 200, "uid-2")
    body = desired(agent, spec(), SETTINGS)
    assert len(agent.child_name) <= 63 and agent.child_name[0].isalpha()
    assert all(len(v) <= 63 for v in body[Child.SERVICE]["metadata"]["labels"].values())
    assert len(agent.cluster_role_binding_name) <= 253
    assert (
        agent.cluster_role_binding_name
        != replace(agent, namespace="other").cluster_role_binding_name
    )


def test_the_condition_keeps_its_transition_time_while_it_holds() -> None:
    children = applied(reconcile(observe(spec())), ready(2))
    first = reconcile(observe(spec(), children=children))
    later = replace(
        observe(spec(), children=children, status=first.status), now=NOW.replace(year=2026)
    )
    assert reconcile(later).status.conditions == first.status.conditions


def test_the_pods_are_configured_the_way_serve_mode_reads_its_configuration() -> None:
    from troupe_agent.__main__ import build_parser
    from troupe_agent.serve import AGENT_NAME_ENV, AGENT_SPEC_ENV

    deployment = desired(AGENT, spec(), SETTINGS)[Child.DEPLOYMENT]
    agent = container(deployment)
    options = build_parser().parse_args(agent["args"])
    assert (options.mode, options.port, options.api_key_env) == ("serve", 8080, "TROUPE_API_KEY")
    env = {e["name"]: e.get("value") for e in agent["env"]}
    assert env[AGENT_NAME_ENV] == "writer"
    served = AgentSpec.model_validate_json(str(env[AGENT_SPEC_ENV]))
    assert served == spec(replicas=0)
