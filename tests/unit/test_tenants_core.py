"""The Tenant core: from a Tenant and its observed namespaces to writes, deletes and status."""

from __future__ import annotations

import copy
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import kubernetes_validate
import pytest

from troupe_operator.api import (
    API_VERSION,
    ConditionStatus,
    NamespaceState,
    TenantNamespace,
    TenantPhase,
    TenantSpec,
    TenantStatus,
)
from troupe_operator.desired import quantity
from troupe_operator.tenants import (
    FINALIZER,
    Child,
    Decision,
    Observation,
    ObservedNamespace,
    TenantRef,
    TenantSettings,
    reconcile,
)
from troupe_operator.workflow import EventType, InvalidSpec

TENANT = TenantRef("team-a", "uid-a")
SETTINGS = TenantSettings("10.96.0.1/32", (6443,))
NOW = datetime(2025, 1, 1, tzinfo=UTC)
PSA = "pod-security.kubernetes.io"
Body = dict[str, Any]


def spec(**fields: Any) -> TenantSpec:
    return TenantSpec.model_validate({"namespaces": ["a-dev"], **fields})


def observe(tenant_spec: TenantSpec | InvalidSpec, **fields: Any) -> Observation:
    defaults: dict[str, Any] = {
        "tenant": TENANT,
        "generation": 2,
        "spec": tenant_spec,
        "status": TenantStatus(),
        "finalizers": (FINALIZER,),
        "deleting": False,
        "namespaces": {},
        "settings": SETTINGS,
        "now": NOW,
    }
    return Observation(**{**defaults, **fields})


def ns(name: str, labels: dict[str, str] | None = None, **metadata: Any) -> Body:
    """A Namespace as the server holds it."""
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": name,
            "uid": f"ns-{name}",
            "resourceVersion": "7",
            "labels": {"kubernetes.io/metadata.name": name, **(labels or {})},
            **metadata,
        },
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    }


def ours(name: str, level: str = "restricted") -> Body:
    labels = {"troupe.dev/tenant": "team-a"}
    for mode in ("enforce", "warn", "audit"):
        labels |= {f"{PSA}/{mode}": level, f"{PSA}/{mode}-version": "latest"}
    return ns(name, labels, annotations={"troupe.dev/tenant": "team-a"})


def served(decision: Decision, namespace: str = "a-dev") -> ObservedNamespace:
    """A namespace as the server would hold it after the decision's writes."""
    body, children = None, {}
    for write in decision.writes:
        if write.namespace != namespace:
            continue
        stored = copy.deepcopy(write.body)
        stored["metadata"].setdefault("resourceVersion", "1")
        stored["metadata"].setdefault("uid", f"uid-{stored['metadata']['name']}")
        if write.child is None:
            body = stored
        else:
            children[write.child] = stored
    return ObservedNamespace(body, children)


def steady(tenant_spec: TenantSpec) -> ObservedNamespace:
    """A namespace of ``tenant_spec`` as the Tenant left it."""
    first = reconcile(observe(tenant_spec))
    return served(first)


def entry(decision: Decision, name: str = "a-dev") -> TenantNamespace:
    (found,) = [e for e in decision.status.namespaces if e.name == name]
    return found


def condition(decision: Decision, kind: str) -> tuple[ConditionStatus, str]:
    (found,) = [c for c in decision.status.conditions if c.type == kind]
    return found.status, found.reason


def workflow(phase: str | None, tokens: int = 0) -> Body:
    status: Body = {"usage": {"totalTokens": tokens}} if tokens else {}
    if phase:
        status["phase"] = phase
    return {"metadata": {"name": "w"}, "status": status}


def job(outcome: str | None = None) -> Body:
    conditions = [{"type": outcome, "status": "True"}] if outcome else []
    return {"metadata": {"name": "j"}, "status": {"conditions": conditions}}


# -- claiming: create, adopt, refuse ----------------------------------------------------------

CLAIMS = [
    # (case, the namespace as found, state, reason, how the Namespace is written)
    ("absent", ObservedNamespace(None), "Ready", "NamespaceReady", "create"),
    ("labelled for it", ObservedNamespace(ours("a-dev")), "Ready", "NamespaceReady", None),
    (
        "labelled for it, Pod Security loosened by hand",
        ObservedNamespace(ours("a-dev", level="privileged")),
        "Ready",
        "NamespaceReady",
        "replace",
    ),
    ("unlabelled and empty", ObservedNamespace(ns("a-dev")), "Ready", "NamespaceReady", "replace"),
    (
        "unlabelled with a Workflow",
        ObservedNamespace(ns("a-dev"), workflows=[workflow("Running")]),
        "Refused",
        "NamespaceNotEmpty",
        None,
    ),
    (
        "unlabelled with an Agent",
        ObservedNamespace(ns("a-dev"), agents=1),
        "Refused",
        "NamespaceNotEmpty",
        None,
    ),
    (
        "labelled for another Tenant",
        ObservedNamespace(ns("a-dev", {"troupe.dev/tenant": "team-b"}), children={}, workflows=[]),
        "Refused",
        "NamespaceOwnedByAnotherTenant",
        None,
    ),
    (
        "being deleted",
        ObservedNamespace(
            ours("a-dev")
            | {
                "metadata": {
                    **ours("a-dev")["metadata"],
                    "deletionTimestamp": "2025-01-01T00:00:00Z",
                }
            }
        ),
        "Terminating",
        "NamespaceTerminating",
        None,
    ),
]


@pytest.mark.parametrize(
    ("case", "found", "state", "reason", "write"), CLAIMS, ids=[c[0] for c in CLAIMS]
)
def test_a_namespace_is_created_adopted_or_refused(
    case: str, found: ObservedNamespace, state: str, reason: str, write: str | None
) -> None:
    decision = reconcile(observe(spec(), namespaces={"a-dev": found}))
    assert (entry(decision).state.value, entry(decision).reason) == (state, reason)
    namespace_writes = [w for w in decision.writes if w.child is None]
    if write is None:
        assert namespace_writes == []
    else:
        (written,) = namespace_writes
        assert written.create == (write == "create")
        labels = written.body["metadata"]["labels"]
        assert labels["troupe.dev/tenant"] == "team-a"
        assert labels[f"{PSA}/enforce"] == "restricted"
        assert labels[f"{PSA}/enforce-version"] == "latest"
        assert labels[f"{PSA}/warn"] == labels[f"{PSA}/audit"] == "restricted"
        assert written.body["metadata"]["annotations"]["troupe.dev/tenant"] == "team-a"
        if not written.create:
            assert written.body["metadata"]["resourceVersion"] == "7"
            assert labels["kubernetes.io/metadata.name"] == "a-dev"
    if state == "Refused":
        assert decision.writes == [] and decision.resync
        assert decision.status.phase is TenantPhase.ERROR
        assert condition(decision, "NamespacesReady") == (ConditionStatus.FALSE, reason)
        assert condition(decision, "Ready") == (ConditionStatus.FALSE, reason)
        assert [e.reason for e in decision.events if e.type is EventType.WARNING] == [reason]
    elif state == "Ready":
        assert condition(decision, "Ready") == (ConditionStatus.TRUE, "TenantReady")
        assert decision.status.phase is TenantPhase.ACTIVE and not decision.resync


def test_a_refusal_names_the_namespace_and_its_owner() -> None:
    other = ns(
        "a-dev", {"troupe.dev/tenant": "team-b"}, annotations={"troupe.dev/tenant": "team-b"}
    )
    decision = reconcile(observe(spec(), namespaces={"a-dev": ObservedNamespace(other)}))
    assert entry(decision).message == "namespace a-dev belongs to Tenant team-b"
    busy = ObservedNamespace(ns("a-dev"), workflows=[workflow(None)] * 2, agents=1)
    decision = reconcile(observe(spec(), namespaces={"a-dev": busy}))
    assert "holds 2 Workflows and 1 Agents" in entry(decision).message
    assert "troupe.dev/tenant=team-a" in entry(decision).message


@pytest.mark.parametrize("name", ["default", "kube-system", "kube-public"])
def test_the_cluster_s_own_namespaces_are_never_taken(name: str) -> None:
    decision = reconcile(
        observe(spec(namespaces=[name]), namespaces={name: ObservedNamespace(ns(name))})
    )
    assert entry(decision, name).reason == "NamespaceReserved" and decision.writes == []


def test_a_namespace_whose_label_was_removed_by_hand_is_labelled_again() -> None:
    found = steady(spec())
    assert found.body is not None
    unlabelled = copy.deepcopy(found.body)
    del unlabelled["metadata"]["labels"]["troupe.dev/tenant"]
    busy = replace(found, body=unlabelled, workflows=[workflow("Running")])
    decision = reconcile(observe(spec(), namespaces={"a-dev": busy}))
    assert entry(decision).state is NamespaceState.READY
    (write,) = decision.writes
    assert write.child is None and write.body["metadata"]["labels"]["troupe.dev/tenant"] == "team-a"


def test_creating_and_adopting_are_reported_as_normal_events() -> None:
    created = reconcile(observe(spec()))
    adopted = reconcile(observe(spec(), namespaces={"a-dev": ObservedNamespace(ns("a-dev"))}))
    assert [(e.type, e.reason) for e in created.events] == [(EventType.NORMAL, "NamespaceCreated")]
    assert [(e.type, e.reason) for e in adopted.events] == [(EventType.NORMAL, "NamespaceAdopted")]


# -- the children ------------------------------------------------------------------------------

FULL = {
    "namespaces": ["a-dev"],
    "owners": [
        {"kind": "Group", "name": "leads"},
        {"kind": "User", "name": "alice@example.com"},
        {"kind": "ServiceAccount", "name": "ci", "namespace": "tools"},
        {"kind": "ServiceAccount", "name": "bot"},
    ],
    "quota": {"pods": 50, "cpu": 4, "memory": "8Gi", "jobs": 100},
    "networkIsolation": {"modelEgressCIDRs": ["10.1.0.0/16"], "modelEgressPorts": [443, 8443]},
}


def children_of(tenant_spec: TenantSpec) -> dict[Child, Body]:
    decision = reconcile(observe(tenant_spec))
    return {w.child: w.body for w in decision.writes if w.child is not None}


def test_every_child_is_written_in_order_labelled_owned_and_valid_for_kubernetes() -> None:
    decision = reconcile(observe(TenantSpec.model_validate(FULL)))
    assert [w.child for w in decision.writes] == [None, *Child]
    assert all(w.create for w in decision.writes)
    version = kubernetes_validate.latest_version()
    for write in decision.writes:
        kubernetes_validate.validate(write.body, version, strict=True)
        if write.child is None:
            continue
        metadata = write.body["metadata"]
        assert (metadata["namespace"], metadata["name"]) == ("a-dev", write.child.child_name)
        assert metadata["labels"] == {
            "troupe.dev/tenant": "team-a",
            "app.kubernetes.io/managed-by": "troupe",
        }
        assert metadata["ownerReferences"] == [
            {
                "apiVersion": API_VERSION,
                "kind": "Tenant",
                "name": "team-a",
                "uid": "uid-a",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]


def test_the_quota_limit_range_and_owners_follow_the_spec() -> None:
    children = children_of(TenantSpec.model_validate(FULL))
    assert children[Child.RESOURCE_QUOTA]["spec"] == {
        "hard": {
            "pods": "50",
            "requests.cpu": "4",
            "requests.memory": "8Gi",
            "count/jobs.batch": "100",
        }
    }
    assert children[Child.LIMIT_RANGE]["spec"]["limits"] == [
        {
            "type": "Container",
            "defaultRequest": {"cpu": "100m", "memory": "128Mi"},
            "default": {"memory": "512Mi"},
        }
    ]
    binding = children[Child.OWNERS]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "troupe-edit",
    }
    assert binding["subjects"] == [
        {"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "leads"},
        {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "alice@example.com"},
        {"kind": "ServiceAccount", "name": "ci", "namespace": "tools"},
        {"kind": "ServiceAccount", "name": "bot"},
    ]


def test_the_network_policies_deny_all_but_dns_models_the_api_and_agents() -> None:
    children = children_of(TenantSpec.model_validate(FULL))
    deny = children[Child.DEFAULT_DENY]["spec"]
    assert deny["podSelector"] == {} and deny["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in deny
    (dns,) = deny["egress"]
    assert dns["to"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
        }
    ]
    assert dns["ports"] == [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
    egress = children[Child.EGRESS]["spec"]
    assert egress["podSelector"] == {"matchLabels": {"app.kubernetes.io/managed-by": "troupe"}}
    assert egress["policyTypes"] == ["Egress"]
    models, api, agents = egress["egress"]
    assert models == {
        "to": [{"ipBlock": {"cidr": "10.1.0.0/16"}}],
        "ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 8443}],
    }
    assert api == {
        "to": [{"ipBlock": {"cidr": "10.96.0.1/32"}}],
        "ports": [{"protocol": "TCP", "port": 6443}],
    }
    assert agents["to"] == [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "troupe-agent"}}}
    ]
    ingress = children[Child.AGENT_INGRESS]["spec"]
    assert ingress == {
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "troupe-agent"}},
        "policyTypes": ["Ingress"],
        "ingress": [{"from": [{"podSelector": {}}], "ports": [{"protocol": "TCP", "port": 8080}]}],
    }


OPTIONAL = [
    ({"quota": {}}, Child.RESOURCE_QUOTA),
    ({"owners": []}, Child.OWNERS),
    ({"networkIsolation": {"enabled": False}}, Child.DEFAULT_DENY),
    ({"networkIsolation": {"enabled": False}}, Child.EGRESS),
    ({"networkIsolation": {"enabled": False}}, Child.AGENT_INGRESS),
]


@pytest.mark.parametrize(("change", "child"), OPTIONAL)
def test_a_child_the_spec_does_not_ask_for_is_not_made_and_is_deleted(
    change: Body, child: Child
) -> None:
    full = TenantSpec.model_validate(FULL)
    reduced = TenantSpec.model_validate({**FULL, **change})
    assert child in children_of(full) and child not in children_of(reduced)
    decision = reconcile(observe(reduced, namespaces={"a-dev": steady(full)}))
    assert ("a-dev", child) in decision.deletes
    assert child not in {w.child for w in decision.writes}


# -- drift -------------------------------------------------------------------------------------


def test_a_steady_tenant_writes_nothing() -> None:
    full = TenantSpec.model_validate(FULL)
    found = steady(full)
    children = {child: copy.deepcopy(body) for child, body in found.children.items()}
    children[Child.RESOURCE_QUOTA]["status"] = {"hard": {"pods": "50"}, "used": {"pods": "3"}}
    children[Child.RESOURCE_QUOTA]["spec"]["hard"]["requests.memory"] = "8192Mi"  # canonical
    found = replace(found, children=children)
    decision = reconcile(observe(full, namespaces={"a-dev": found}))
    assert (decision.writes, decision.deletes, decision.finalizers) == ([], [], None)


DRIFTS = [
    ("quota raised", Child.RESOURCE_QUOTA, lambda b: b["spec"]["hard"].update(pods="500")),
    ("quota limit removed", Child.RESOURCE_QUOTA, lambda b: b["spec"]["hard"].pop("pods")),
    ("quota limit added", Child.RESOURCE_QUOTA, lambda b: b["spec"]["hard"].update(services="1")),
    ("limit range emptied", Child.LIMIT_RANGE, lambda b: b["spec"].update(limits=[])),
    ("deny opened", Child.DEFAULT_DENY, lambda b: b["spec"].update(policyTypes=["Egress"])),
    ("egress widened", Child.EGRESS, lambda b: b["spec"]["egress"].append({})),
    ("owner added", Child.OWNERS, lambda b: b["subjects"].append({"kind": "User", "name": "x"})),
    ("label removed", Child.EGRESS, lambda b: b["metadata"]["labels"].pop("troupe.dev/tenant")),
]


@pytest.mark.parametrize(("case", "child", "edit"), DRIFTS, ids=[d[0] for d in DRIFTS])
def test_an_edited_child_is_written_back_over_the_version_read(
    case: str, child: Child, edit: Any
) -> None:
    full = TenantSpec.model_validate(FULL)
    found = steady(full)
    wanted = copy.deepcopy(found.children[child])
    edited = copy.deepcopy(wanted)
    edit(edited)
    edited["metadata"]["resourceVersion"] = "42"
    decision = reconcile(
        observe(
            full, namespaces={"a-dev": replace(found, children={**found.children, child: edited})}
        )
    )
    (write,) = decision.writes
    assert (write.child, write.create) == (child, False)
    assert write.body["metadata"]["resourceVersion"] == "42"
    for key in ("spec", "subjects"):
        if key in wanted:
            assert write.body[key] == wanted[key]


def test_a_deleted_child_is_created_again() -> None:
    full = TenantSpec.model_validate(FULL)
    found = steady(full)
    children = {c: b for c, b in found.children.items() if c is not Child.DEFAULT_DENY}
    decision = reconcile(observe(full, namespaces={"a-dev": replace(found, children=children)}))
    assert [(w.child, w.create) for w in decision.writes] == [(Child.DEFAULT_DENY, True)]


def test_an_object_it_does_not_own_is_never_overwritten() -> None:
    full = TenantSpec.model_validate(FULL)
    found = steady(full)
    foreign = copy.deepcopy(found.children[Child.EGRESS])
    foreign["metadata"]["ownerReferences"] = []
    children = {**found.children, Child.EGRESS: foreign}
    decision = reconcile(observe(full, namespaces={"a-dev": replace(found, children=children)}))
    assert decision.writes == [] and decision.deletes == []
    assert (entry(decision).reason, entry(decision).message) == (
        "ChildNotOwned",
        "NetworkPolicy a-dev/troupe-egress exists and does not belong to Tenant team-a",
    )


def test_children_of_an_earlier_tenant_of_the_same_name_are_taken_over() -> None:
    full = TenantSpec.model_validate(FULL)
    found = steady(full)
    decision = reconcile(
        observe(full, tenant=TenantRef("team-a", "uid-new"), namespaces={"a-dev": found})
    )
    assert {w.child for w in decision.writes} == set(Child)
    assert all(
        w.body["metadata"]["ownerReferences"][0]["uid"] == "uid-new" for w in decision.writes
    )


def test_a_write_refused_for_good_is_a_refused_namespace_warned_once() -> None:
    observation = observe(spec(), refusals={("a-dev", Child.EGRESS): "denied by a webhook"})
    decision = reconcile(observation)
    assert (entry(decision).state, entry(decision).reason) == (
        NamespaceState.REFUSED,
        "NetworkPolicyRefused",
    )
    assert entry(decision).message == "namespace a-dev: denied by a webhook"
    assert [e.reason for e in decision.events if e.type is EventType.WARNING] == [
        "NetworkPolicyRefused"
    ]
    again = reconcile(replace(observation, status=decision.status))
    assert [e for e in again.events if e.type is EventType.WARNING] == []


# -- finalizer and deletion --------------------------------------------------------------------


def test_the_first_reconcile_adds_the_finalizer_keeping_others() -> None:
    decision = reconcile(observe(spec(), finalizers=("other.io/x",)))
    assert decision.finalizers == ("other.io/x", FINALIZER)
    assert reconcile(observe(spec())).finalizers is None


def deleting(tenant_spec: TenantSpec, namespaces: dict[str, ObservedNamespace]) -> Decision:
    return reconcile(observe(tenant_spec, deleting=True, namespaces=namespaces))


def test_retain_deletes_its_children_and_removes_its_label_keeping_the_namespace() -> None:
    full = TenantSpec.model_validate(FULL)
    found = steady(full)
    foreign = copy.deepcopy(found.children[Child.LIMIT_RANGE])
    foreign["metadata"]["ownerReferences"] = []
    found = replace(found, children={**found.children, Child.LIMIT_RANGE: foreign})
    decision = deleting(full, {"a-dev": found})
    assert sorted(d[1].name for d in decision.deletes if d[1]) == sorted(
        c.name for c in Child if c is not Child.LIMIT_RANGE
    )
    (write,) = decision.writes
    metadata = write.body["metadata"]
    assert write.child is None and not write.create
    assert "troupe.dev/tenant" not in metadata["labels"]
    assert "troupe.dev/tenant" not in metadata["annotations"]
    assert metadata["labels"][f"{PSA}/enforce"] == "restricted"  # releasing loosens nothing
    assert decision.again and decision.finalizers is None
    assert decision.status.phase is TenantPhase.TERMINATING
    assert condition(decision, "Ready") == (ConditionStatus.FALSE, "CleaningUp")


def test_delete_deletes_every_namespace_labelled_for_it() -> None:
    delete = TenantSpec.model_validate(
        {**FULL, "namespaces": ["a-dev", "gone"], "deletionPolicy": "Delete"}
    )
    namespaces = {
        "a-dev": steady(delete),
        "gone": ObservedNamespace(None),
        "b-dev": ObservedNamespace(ns("b-dev", {"troupe.dev/tenant": "team-b"})),
    }
    decision = deleting(delete, namespaces)
    assert decision.deletes == [("a-dev", None)] and decision.writes == []
    assert decision.again and decision.finalizers is None


CLEAN = [
    ("released", ObservedNamespace(ns("a-dev"))),
    ("gone", ObservedNamespace(None)),
    (
        "still terminating",
        ObservedNamespace(
            ours("a-dev")
            | {
                "metadata": {
                    **ours("a-dev")["metadata"],
                    "deletionTimestamp": "2025-01-01T00:00:00Z",
                }
            }
        ),
    ),
    ("another Tenant's", ObservedNamespace(ns("a-dev", {"troupe.dev/tenant": "team-b"}))),
]


@pytest.mark.parametrize("policy", ["Retain", "Delete"])
@pytest.mark.parametrize(("case", "found"), CLEAN, ids=[c[0] for c in CLEAN])
def test_with_nothing_left_the_finalizer_goes(
    case: str, found: ObservedNamespace, policy: str
) -> None:
    decision = deleting(spec(deletionPolicy=policy), {"a-dev": found})
    assert (decision.writes, decision.deletes) == ([], [])
    assert decision.finalizers == ()


def test_a_tenant_deleted_before_it_was_reconciled_is_left_alone() -> None:
    decision = reconcile(observe(spec(), deleting=True, finalizers=()))
    assert (decision.writes, decision.deletes, decision.finalizers) == ([], [], None)


def test_a_namespace_dropped_from_the_spec_is_released_never_deleted() -> None:
    delete = TenantSpec.model_validate({**FULL, "deletionPolicy": "Delete"})
    old = steady(delete)
    decision = reconcile(
        observe(spec(namespaces=["a-new"], deletionPolicy="Delete"), namespaces={"a-dev": old})
    )
    assert ("a-dev", None) not in decision.deletes
    assert {d for d in decision.deletes if d[0] == "a-dev"} == {("a-dev", c) for c in Child}
    (release,) = [w for w in decision.writes if w.namespace == "a-dev"]
    assert "troupe.dev/tenant" not in release.body["metadata"]["labels"]
    assert [s.name for s in decision.status.namespaces] == ["a-new"]


# -- status ------------------------------------------------------------------------------------


def test_usage_is_counted_in_its_namespaces_only() -> None:
    tenant_spec = spec(namespaces=["a-dev", "a-prod", "shared"], limits={"tokenBudget": 1000})
    namespaces = {
        "a-dev": ObservedNamespace(
            ours("a-dev"),
            workflows=[workflow("Running", 300), workflow(None), workflow("Succeeded", 200)],
            jobs=[job(), job("Complete"), job()],
        ),
        "a-prod": ObservedNamespace(
            ns("a-prod"), workflows=[], jobs=[job(), job("Failed")]
        ),  # adopted now: its Jobs count
        "shared": ObservedNamespace(
            ns("shared", {"troupe.dev/tenant": "team-b"}),
            workflows=[workflow("Running", 5000)],
            jobs=[job()],
        ),
    }
    status = reconcile(observe(tenant_spec, namespaces=namespaces)).status
    assert status.running_tasks == 3
    assert status.workflows.model_dump() == {
        "pending": 1,
        "running": 1,
        "succeeded": 1,
        "failed": 0,
        "error": 0,
    }
    assert (status.tokens_used, status.budget_remaining) == (500, 500)
    assert status.namespaces_ready == "2/3" and status.observed_generation == 2
    assert [(n.name, n.state.value) for n in status.namespaces] == [
        ("a-dev", "Ready"),
        ("a-prod", "Ready"),
        ("shared", "Refused"),
    ]


@pytest.mark.parametrize(
    ("budget", "used", "remaining", "within"),
    [
        (None, 10, None, None),
        (100, 10, 90, (ConditionStatus.TRUE, "WithinBudget")),
        (100, 100, 0, (ConditionStatus.FALSE, "TokenBudgetExceeded")),
        (100, 250, 0, (ConditionStatus.FALSE, "TokenBudgetExceeded")),
    ],
)
def test_budget_remaining_and_whether_it_is_spent(
    budget: int | None, used: int, remaining: int | None, within: Any
) -> None:
    limits = {"tokenBudget": budget} if budget else {}
    found = ObservedNamespace(ours("a-dev"), workflows=[workflow("Succeeded", used)])
    status = reconcile(observe(spec(limits=limits), namespaces={"a-dev": found})).status
    assert (status.tokens_used, status.budget_remaining) == (used, remaining)
    kept = [(c.status, c.reason) for c in status.conditions if c.type == "WithinBudget"]
    assert kept == ([within] if within else [])


def test_a_spent_budget_is_announced_once() -> None:
    found = ObservedNamespace(ours("a-dev"), workflows=[workflow("Running", 120)])
    observation = observe(spec(limits={"tokenBudget": 100}), namespaces={"a-dev": found})
    first = reconcile(observation)
    warnings = [e for e in first.events if e.reason == "TokenBudgetExceeded"]
    assert [e.message for e in warnings] == [
        "120 of 100 tokens used (limits.tokenBudget); no new task attempt starts until the "
        "budget is raised"
    ]
    again = reconcile(replace(observation, status=first.status))
    assert [e for e in again.events if e.reason == "TokenBudgetExceeded"] == []


def test_conditions_keep_their_transition_time_while_they_hold() -> None:
    first = reconcile(observe(spec()))
    later = datetime(2025, 1, 2, tzinfo=UTC)
    second = reconcile(
        observe(spec(), status=first.status, now=later, namespaces={"a-dev": served(first)})
    )
    assert [c.last_transition_time for c in second.status.conditions] == [NOW, NOW]
    assert second.status == first.status


def test_an_invalid_spec_is_an_error_warned_once() -> None:
    decision = reconcile(observe(InvalidSpec(["spec.namespaces: required"])))
    assert decision.writes == [] and decision.status.phase is TenantPhase.ERROR
    assert [e.reason for e in decision.events] == ["InvalidSpec"]
    again = reconcile(observe(InvalidSpec(["spec.namespaces: required"]), status=decision.status))
    assert again.events == []


def test_a_long_tenant_name_is_shortened_in_labels_and_kept_whole_in_annotations() -> None:
    tenant = TenantRef("t" * 100, "uid")
    decision = reconcile(observe(spec(), tenant=tenant))
    metadata = decision.writes[0].body["metadata"]
    assert len(metadata["labels"]["troupe.dev/tenant"]) == 63
    assert metadata["annotations"]["troupe.dev/tenant"] == "t" * 100


QUANTITIES = [
    ("4", "4000m", True),
    ("0.5", "500m", True),
    ("8Gi", "8192Mi", True),
    ("1e3", "1k", True),
    (50, "50", True),
    ("1Gi", "1G", False),
    ("1", "not-a-quantity", False),
]


@pytest.mark.parametrize(("left", "right", "same"), QUANTITIES)
def test_quantities_compare_by_amount(left: Any, right: Any, same: bool) -> None:
    assert (quantity(left) == quantity(right)) is same
