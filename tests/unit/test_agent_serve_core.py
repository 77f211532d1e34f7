"""The Agent serve core: from an Agent and its observed children to writes, deletes and status."""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from troupe_operator.agents import AgentRef, Child, Decision, Observation, ServeSettings, reconcile
from troupe_operator.agents.children import (
    AGENT_UID_ENV,
    MEMBERS_ENV,
    POD_IP_ENV,
    SPEC_HASH_ANNOTATION,
    desired,
)
from troupe_operator.api import (
    AgentPhase,
    AgentSpec,
    AgentStatus,
    Condition,
    ConditionStatus,
)
from troupe_operator.workflow import InvalidSpec
from troupe_operator.workflow.naming import short_digest

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


def test_the_pods_may_touch_only_their_lease_status_conversations_and_events() -> None:
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
        {
            "apiGroups": ["troupe.dev"],
            "resources": ["conversations"],
            "verbs": ["get", "list", "create", "update", "delete"],
        },
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
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
    ("replicas", "served", "phase", "events"),
    [
        (2, False, AgentPhase.ERROR, ["NamespaceNotTenanted"]),  # no pods are started
        (2, True, AgentPhase.ERROR, ["NamespaceNotTenanted"]),  # pods serving are left alone
        (0, False, AgentPhase.READY, []),  # task-only: nothing to refuse
    ],
)
def test_an_agent_in_an_untenanted_namespace_gets_no_pods_and_says_why(
    replicas: int, served: bool, phase: AgentPhase, events: list[str]
) -> None:
    refusal = "namespace team is not owned by any Tenant"
    children = applied(reconcile(observe(spec())), ready(2)) if served else {}
    decision = reconcile(
        observe(spec(replicas=replicas), children=children, tenancy_refusal=refusal)
    )
    assert (decision.writes, decision.deletes) == ([], [])
    assert decision.status.phase is phase
    assert [event.reason for event in decision.events] == events
    if events:
        assert decision.status.conditions[0].message == refusal
        assert decision.resync


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
    from troupe_operator.api.serve_env import NAME_ENV, SPEC_ENV

    deployment = desired(AGENT, spec(), SETTINGS)[Child.DEPLOYMENT]
    agent = container(deployment)
    options = build_parser().parse_args(agent["args"])
    assert (options.mode, options.port, options.api_key_env) == ("serve", 8080, "TROUPE_API_KEY")
    env = {e["name"]: e.get("value") for e in agent["env"]}
    assert env[NAME_ENV] == "writer"
    served = AgentSpec.model_validate_json(str(env[SPEC_ENV]))
    assert served == spec(replicas=0)


@pytest.mark.parametrize(
    ("members", "env"),
    [
        ([], None),
        (
            ["scout", "a.b"],
            {
                "a.b": f"http://a-b-{short_digest('a.b')}.team.svc:8080",
                "scout": "http://scout.team.svc:8080",
            },
        ),
    ],
)
def test_the_pods_know_their_agent_their_address_and_their_team(
    members: list[str], env: dict[str, str] | None
) -> None:
    deployment = desired(AGENT, spec(role="supervisor", members=members), SETTINGS)
    variables = container(deployment[Child.DEPLOYMENT])["env"]
    values = {e["name"]: e.get("value") for e in variables}
    assert values[AGENT_UID_ENV] == "uid-1"
    assert {"name": POD_IP_ENV, "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}} in (
        variables
    )
    assert (json.loads(values[MEMBERS_ENV]) if MEMBERS_ENV in values else None) == env


TEAM = ["scout", "critic"]


@pytest.mark.parametrize(
    ("members", "found", "reason", "words"),
    [
        (TEAM, {"scout": 1, "critic": 2}, "MembersServed", "serves: scout, critic"),
        (TEAM, {"scout": 1}, "MemberNotFound", "not found: critic"),
        (TEAM, {"scout": None, "critic": 0}, "MemberNotFound", "not found: scout"),
        (TEAM, {"scout": 0, "critic": 0}, "MemberNotServed", "replicas 0, which serve nothing"),
        (["scout", "writer"], {"scout": 1, "writer": 2}, "MemberNotFound", "writer lists itself"),
    ],
)
def test_a_team_names_its_missing_and_idle_members_and_still_runs(
    members: list[str], found: dict[str, int | None], reason: str, words: str
) -> None:
    team = spec(role="supervisor", members=members)
    children = applied(reconcile(observe(team)), ready(2))
    decision = reconcile(observe(team, children=children, members=found))
    condition = {c.type: c for c in decision.status.conditions}["MembersReady"]
    served = reason == "MembersServed"
    assert (condition.status == "True", condition.reason) == (served, reason)
    assert words in condition.message
    assert decision.status.phase is (AgentPhase.READY if served else AgentPhase.DEGRADED)
    assert decision.writes == []
    warnings = [(e.type, e.reason, e.message) for e in decision.events]
    assert warnings == ([] if served else [("Warning", reason, condition.message)])
    again = reconcile(observe(team, children=children, members=found, status=decision.status))
    assert again.events == []


def test_each_change_of_what_is_missing_is_one_more_warning_and_an_error_stays() -> None:
    team = spec(role="supervisor", members=TEAM)
    first = reconcile(observe(team, members={"scout": 1}))
    worse = reconcile(observe(team, status=first.status))
    assert [(e.reason, e.message) for e in worse.events] == [
        ("MemberNotFound", "member Agents not found: scout, critic")
    ]
    error = reconcile(observe(team, secret_keys=None, status=worse.status))
    assert error.status.phase is AgentPhase.ERROR
    assert [e.reason for e in error.events] == ["SecretNotFound"]
    solo = reconcile(observe(spec(role="supervisor"), status=error.status))
    assert [c.type for c in solo.status.conditions] == ["Ready", "Progressing"]


def test_a_condition_the_operator_does_not_own_is_kept_as_it_was() -> None:
    model_ready = Condition(
        type="ModelReady", status=ConditionStatus.FALSE, reason="ModelUnreachable", message="x"
    )
    status = AgentStatus(supervisor="writer-0", lease_transitions=4, conditions=[model_ready])
    decision = reconcile(observe(spec(), status=status))
    assert [c.type for c in decision.status.conditions] == ["Ready", "Progressing", "ModelReady"]
    assert decision.status.conditions[-1] == model_ready
    assert (decision.status.supervisor, decision.status.lease_transitions) == ("writer-0", 4)


def test_the_pods_export_telemetry_where_the_operator_does_and_roll_when_that_changes() -> None:
    traced = dataclasses.replace(
        SETTINGS, telemetry=(("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),)
    )
    plain, exporting = (desired(AGENT, spec(), s)[Child.DEPLOYMENT] for s in (SETTINGS, traced))
    assert {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://collector:4318"} in (
        container(exporting)["env"]
    )
    assert not any(e["name"].startswith("OTEL_") for e in container(plain)["env"])
    hashes = {
        d["spec"]["template"]["metadata"]["annotations"]["troupe.dev/spec-hash"]
        for d in (plain, exporting)
    }
    assert len(hashes) == 2
