"""Tenants end to end: the real operator keeps a Tenant's namespaces, policies and status.

Authorization is the emulator's RBAC evaluation for real ServiceAccount tokens, never the
rules read back. The emulator stores no bootstrap ClusterRoles (``view``, ``edit``,
``admin``): the tests load ``troupe-view`` and ``troupe-edit`` from ``deploy/operator.yaml``
as an installation does, and stand in for the bootstrap ``edit`` ClusterRole with one of the
same ``aggregationRule`` (the emulator evaluates aggregation). Owners are bound to
``troupe-edit`` directly, as the operator binds them. Nothing here enforces a NetworkPolicy,
a ResourceQuota or Pod Security (the emulator has no network, quota controller or
admission for them): their objects are checked as written.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable
from typing import Any

import kubernetes
import pytest
import yaml

from tests.integration.test_workflow_faults import ENDED
from tests.integration.troupe_driver import (
    GROUP,
    VERSION,
    Troupe,
    agent,
    reply_naming_the_task,
    workflow,
)
from tests.support.emulator import EmulatedCluster
from tests.support.fixtures import ClientAs
from tests.support.jobrunner import JobRunner
from tests.support.openai_stub import OpenAIStub
from tests.support.waiting import wait_for
from troupe_operator.workflow import WorkflowRef

MANIFEST = pathlib.Path(__file__).resolve().parents[2] / "deploy" / "operator.yaml"
PSA = "pod-security.kubernetes.io"
LABEL = "troupe.dev/tenant"
UNPULLABLE = "registry.invalid/never:1"
WAIT = 30.0
RBAC = "rbac.authorization.k8s.io"
Body = dict[str, Any]


def tenant(name: str, namespaces: list[str], **spec: Any) -> Body:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Tenant",
        "metadata": {"name": name},
        "spec": {"namespaces": namespaces, **spec},
    }


def create(troupe: Troupe, *bodies: Body) -> None:
    for body in bodies:
        troupe.custom.create_cluster_custom_object(GROUP, VERSION, "tenants", body)


def read_tenant(troupe: Troupe, name: str) -> Body | None:
    try:
        body: Body = troupe.custom.get_cluster_custom_object(GROUP, VERSION, "tenants", name)
    except kubernetes.client.ApiException as error:
        if error.status == 404:
            return None
        raise
    return body


def conditions(body: Body | None) -> dict[str, Body]:
    status = (body or {}).get("status") or {}
    return {c["type"]: c for c in status.get("conditions") or ()}


def wait_tenant(troupe: Troupe, name: str, what: str, check: Callable[[Body], bool]) -> Body:
    def reached() -> Body | None:
        body = read_tenant(troupe, name)
        return body if body is not None and check(body) else None

    return wait_for(reached, timeout=WAIT, interval=0.1, what=f"Tenant {name} {what}")


def wait_ready(troupe: Troupe, name: str) -> Body:
    def ready(body: Body) -> bool:
        current = body["status"].get("observedGeneration") == body["metadata"]["generation"]
        return current and conditions(body).get("Ready", {}).get("status") == "True"

    return wait_tenant(troupe, name, "Ready", lambda body: bool(body.get("status")) and ready(body))


def as_dict(troupe: Troupe, read: Callable[[], Any]) -> Body | None:
    try:
        body: Body = troupe.api.sanitize_for_serialization(read())
    except kubernetes.client.ApiException as error:
        if error.status == 404:
            return None
        raise
    return body


def namespace(troupe: Troupe, name: str) -> Body | None:
    return as_dict(troupe, lambda: troupe.core.read_namespace(name))


def children(troupe: Troupe, where: str) -> dict[str, Body | None]:
    networking = kubernetes.client.NetworkingV1Api(troupe.api)
    rbac = kubernetes.client.RbacAuthorizationV1Api(troupe.api)
    reads: dict[str, Callable[[], Any]] = {
        "ResourceQuota": lambda: troupe.core.read_namespaced_resource_quota("troupe-tenant", where),
        "LimitRange": lambda: troupe.core.read_namespaced_limit_range("troupe-tenant", where),
        "troupe-default-deny": lambda: networking.read_namespaced_network_policy(
            "troupe-default-deny", where
        ),
        "troupe-egress": lambda: networking.read_namespaced_network_policy("troupe-egress", where),
        "troupe-agent-ingress": lambda: networking.read_namespaced_network_policy(
            "troupe-agent-ingress", where
        ),
        "RoleBinding": lambda: rbac.read_namespaced_role_binding("troupe-owners", where),
    }
    return {kind: as_dict(troupe, read) for kind, read in reads.items()}


def tenant_events(troupe: Troupe, name: str) -> list[tuple[str, str, str]]:
    events = troupe.core.list_namespaced_event("default").items
    return [
        (e.type, e.reason, e.message)
        for e in events
        if e.involved_object.kind == "Tenant" and e.involved_object.name == name
    ]


def load_troupe_roles(emulator: EmulatedCluster) -> None:
    """``troupe-view`` and ``troupe-edit`` as deploy/operator.yaml installs them."""
    for document in yaml.safe_load_all(MANIFEST.read_text()):
        if (
            document
            and document["kind"] == "ClusterRole"
            and document["metadata"]["name"]
            in (
                "troupe-view",
                "troupe-edit",
            )
        ):
            emulator.create(document)


# -- what a Tenant makes -----------------------------------------------------------------------

SPEC = {
    "owners": [
        {"kind": "ServiceAccount", "name": "alice", "namespace": "default"},
        {"kind": "Group", "name": "leads"},
    ],
    "quota": {"pods": 20, "cpu": 4, "memory": "8Gi", "jobs": 50},
    "limits": {"tokenBudget": 100000},
    "networkIsolation": {"modelEgressCIDRs": ["10.1.0.0/16"], "modelEgressPorts": [443]},
    "podSecurity": "baseline",
}


def test_a_tenant_creates_and_adopts_its_namespaces_with_every_object(
    emulator: EmulatedCluster, troupe: Troupe
) -> None:
    emulator.create_namespace("a-prod")  # exists, unlabelled, empty: adopted
    create(troupe, tenant("team-a", ["a-dev", "a-prod"], **SPEC))
    with troupe.operator(api_server_cidr="10.96.0.1/32", api_server_ports=(6443,)):
        body = wait_ready(troupe, "team-a")
        wait_for(  # Events are posted after the status is written
            lambda: (
                {"NamespaceCreated", "NamespaceAdopted"}
                <= {reason for _, reason, _ in tenant_events(troupe, "team-a")}
            ),
            timeout=WAIT,
            what="Events for the namespaces created and adopted",
        )
        found = {name: children(troupe, name) for name in ("a-dev", "a-prod")}
        namespaces = {name: namespace(troupe, name) for name in ("a-dev", "a-prod")}

    uid = body["metadata"]["uid"]
    status = body["status"]
    assert body["metadata"]["finalizers"] == ["troupe.dev/tenant-cleanup"]
    assert status["phase"] == "Active" and status["namespacesReady"] == "2/2"
    assert [(n["name"], n["state"]) for n in status["namespaces"]] == [
        ("a-dev", "Ready"),
        ("a-prod", "Ready"),
    ]
    assert conditions(body)["NamespacesReady"]["status"] == "True"
    assert (status["tokensUsed"], status["budgetRemaining"], status["runningTasks"]) == (
        0,
        100000,
        0,
    )

    for name in ("a-dev", "a-prod"):
        labels = (namespaces[name] or {})["metadata"]["labels"]
        assert labels[LABEL] == "team-a"
        for mode in ("enforce", "warn", "audit"):
            assert (labels[f"{PSA}/{mode}"], labels[f"{PSA}/{mode}-version"]) == (
                "baseline",
                "latest",
            )
        objects = found[name]
        assert all(objects.values()), objects
        for child in objects.values():
            assert child is not None
            metadata = child["metadata"]
            assert metadata["labels"] == {LABEL: "team-a", "app.kubernetes.io/managed-by": "troupe"}
            assert [(o["kind"], o["uid"]) for o in metadata["ownerReferences"]] == [("Tenant", uid)]
        assert (objects["ResourceQuota"] or {})["spec"]["hard"] == {
            "pods": "20",
            "requests.cpu": "4",
            "requests.memory": "8Gi",
            "count/jobs.batch": "50",
        }
        (limits,) = (objects["LimitRange"] or {})["spec"]["limits"]
        assert limits["defaultRequest"] == {"cpu": "100m", "memory": "128Mi"}
        assert limits["default"] == {"memory": "512Mi"}
        deny = (objects["troupe-default-deny"] or {})["spec"]
        assert deny["policyTypes"] == ["Ingress", "Egress"] and deny["podSelector"] == {}
        assert {p["port"] for rule in deny["egress"] for p in rule["ports"]} == {53}
        egress = (objects["troupe-egress"] or {})["spec"]["egress"]
        assert [peer["ipBlock"]["cidr"] for peer in egress[0]["to"]] == ["10.1.0.0/16"]
        assert [peer["ipBlock"]["cidr"] for peer in egress[1]["to"]] == ["10.96.0.1/32"]
        assert [p["port"] for p in egress[1]["ports"]] == [6443]
        binding = objects["RoleBinding"] or {}
        assert binding["roleRef"]["name"] == "troupe-edit"
        assert [(s["kind"], s["name"]) for s in binding["subjects"]] == [
            ("ServiceAccount", "alice"),
            ("Group", "leads"),
        ]


def test_the_status_counts_tasks_workflows_and_tokens(
    troupe: Troupe, job_runner: JobRunner
) -> None:
    job_runner.unpullable_images = lambda image: image == UNPULLABLE
    create(troupe, tenant("team-a", ["a-dev"], limits={"tokenBudget": 100000}))
    with OpenAIStub(reply=reply_naming_the_task) as stub, troupe.operator():
        wait_ready(troupe, "team-a")
        worker = agent("worker", stub.base_url)
        run = workflow("count-me", [{"name": "only"}])
        for body, plural in ((worker, "agents"), (run, "workflows")):
            body["metadata"]["namespace"] = "a-dev"
            troupe.custom.create_namespaced_custom_object(GROUP, VERSION, "a-dev", plural, body)
        # A task Job whose pod never starts: running, as far as counting goes.
        stuck = {
            "metadata": {"name": "stuck", "labels": {"troupe.dev/workflow": "elsewhere"}},
            "spec": {
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "task", "image": UNPULLABLE}],
                    }
                }
            },
        }
        kubernetes.client.BatchV1Api(troupe.api).create_namespaced_job("a-dev", stuck)

        def ended() -> Body | None:
            body = troupe.custom.get_namespaced_custom_object(
                GROUP, VERSION, "a-dev", "workflows", "count-me"
            )
            status: Body = body.get("status") or {}
            return status if status.get("phase") in ENDED else None

        run_status = wait_for(ended, timeout=60, interval=0.1, what="the Workflow to end")
        assert run_status["phase"] == "Succeeded", run_status
        used = run_status["usage"]["totalTokens"]
        assert used > 0
        body = wait_tenant(
            troupe,
            "team-a",
            "counting the run",
            lambda b: (
                b["status"].get("tokensUsed") == used
                and b["status"].get("runningTasks") == 1
                and b["status"]["workflows"]["succeeded"] == 1
            ),
        )
    assert body["status"]["budgetRemaining"] == 100000 - used
    assert body["status"]["workflows"] == {
        "pending": 0,
        "running": 0,
        "succeeded": 1,
        "failed": 0,
        "error": 0,
    }


# -- drift -------------------------------------------------------------------------------------


def test_a_deleted_or_edited_child_is_repaired(troupe: Troupe) -> None:
    create(troupe, tenant("team-a", ["a-dev"], quota={"pods": 20}))
    networking = kubernetes.client.NetworkingV1Api(troupe.api)
    with troupe.operator():
        wait_ready(troupe, "team-a")
        before = children(troupe, "a-dev")["troupe-default-deny"] or {}
        networking.delete_namespaced_network_policy("troupe-default-deny", "a-dev")
        wait_for(
            lambda: (
                (now := children(troupe, "a-dev")["troupe-default-deny"])
                and now["metadata"]["uid"] != before["metadata"]["uid"]
            ),
            timeout=WAIT,
            what="the NetworkPolicy created again",
        )

        troupe.core.patch_namespaced_resource_quota(
            "troupe-tenant", "a-dev", {"spec": {"hard": {"pods": "999", "services": "1"}}}
        )
        wait_for(
            lambda: (
                (children(troupe, "a-dev")["ResourceQuota"] or {})["spec"]["hard"] == {"pods": "20"}
            ),
            timeout=WAIT,
            what="the quota's pods written back",
        )

        # The namespace's label removed by hand: it still holds the Tenant's objects.
        troupe.core.patch_namespace("a-dev", {"metadata": {"labels": {LABEL: None}}})
        wait_for(
            lambda: (
                ((namespace(troupe, "a-dev") or {})["metadata"]["labels"] or {}).get(LABEL)
                == "team-a"
            ),
            timeout=WAIT,
            what="the namespace labelled again",
        )
        wait_ready(troupe, "team-a")


# -- refusals ----------------------------------------------------------------------------------


def refusal(body: Body, name: str) -> Body | None:
    found = [n for n in (body.get("status") or {}).get("namespaces") or () if n["name"] == name]
    return found[0] if found and found[0]["state"] == "Refused" else None


def test_a_namespace_of_another_tenant_is_refused_until_it_is_released(troupe: Troupe) -> None:
    create(troupe, tenant("team-a", ["shared"]))
    with troupe.operator():
        wait_ready(troupe, "team-a")
        create(troupe, tenant("team-b", ["shared", "b-own"]))
        body = wait_tenant(troupe, "team-b", "refused", lambda b: refusal(b, "shared") is not None)
        refused = refusal(body, "shared") or {}
        assert refused["reason"] == "NamespaceOwnedByAnotherTenant"
        assert refused["message"] == "namespace shared belongs to Tenant team-a"
        ready = conditions(body)["NamespacesReady"]
        assert (ready["status"], ready["reason"]) == ("False", "NamespaceOwnedByAnotherTenant")
        assert "shared" in ready["message"] and "team-a" in ready["message"]
        assert conditions(body)["Ready"]["status"] == "False"
        assert body["status"]["phase"] == "Error" and body["status"]["namespacesReady"] == "1/2"
        warning = ("Warning", "NamespaceOwnedByAnotherTenant", refused["message"])
        wait_for(  # Events are posted after the status is written
            lambda: warning in tenant_events(troupe, "team-b"), timeout=WAIT, what="the Warning"
        )
        assert (namespace(troupe, "shared") or {})["metadata"]["labels"][LABEL] == "team-a"
        binding = children(troupe, "shared")["RoleBinding"]
        assert binding is None  # team-a has no owners; team-b wrote nothing there

        # team-a goes (Retain): the namespace is free, and team-b takes it at once.
        troupe.custom.delete_cluster_custom_object(GROUP, VERSION, "tenants", "team-a")
        body = wait_ready(troupe, "team-b")
    assert body["status"]["namespacesReady"] == "2/2"
    assert (namespace(troupe, "shared") or {})["metadata"]["labels"][LABEL] == "team-b"


def test_of_two_tenants_claiming_a_new_namespace_the_first_to_label_it_wins(
    troupe: Troupe,
) -> None:
    with troupe.operator():
        create(troupe, tenant("team-a", ["contested"]), tenant("team-b", ["contested"]))

        def settled() -> tuple[str, Body] | None:
            owner = ((namespace(troupe, "contested") or {}).get("metadata") or {}).get("labels")
            winner = (owner or {}).get(LABEL)
            if winner is None:
                return None
            loser = "team-b" if winner == "team-a" else "team-a"
            body = read_tenant(troupe, loser) or {}
            return (winner, body) if refusal(body, "contested") else None

        winner, loser = wait_for(settled, timeout=WAIT, interval=0.1, what="one winner")
        wait_ready(troupe, winner)
    refused = refusal(loser, "contested") or {}
    assert refused["reason"] == "NamespaceOwnedByAnotherTenant"
    assert refused["message"] == f"namespace contested belongs to Tenant {winner}"


def test_an_unlabelled_namespace_in_use_is_refused_until_it_is_empty(
    emulator: EmulatedCluster, troupe: Troupe
) -> None:
    emulator.create_namespace("busy")
    run = workflow("in-use", [{"name": "only", "agent": "absent"}])
    run["metadata"]["namespace"] = "busy"
    troupe.custom.create_namespaced_custom_object(GROUP, VERSION, "busy", "workflows", run)
    create(troupe, tenant("team-a", ["busy"]))
    with troupe.operator():
        body = wait_tenant(troupe, "team-a", "refused", lambda b: refusal(b, "busy") is not None)
        refused = refusal(body, "busy") or {}
        assert refused["reason"] == "NamespaceNotEmpty"
        assert "holds 1 Workflows and 0 Agents" in refused["message"]
        assert LABEL not in ((namespace(troupe, "busy") or {})["metadata"].get("labels") or {})
        troupe.custom.delete_namespaced_custom_object(GROUP, VERSION, "busy", "workflows", "in-use")
        wait_ready(troupe, "team-a")  # the resync adopts it


# -- deletion ----------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["Retain", "Delete"])
def test_deleting_a_tenant_retains_or_deletes_its_namespaces(troupe: Troupe, policy: str) -> None:
    owners = [{"kind": "Group", "name": "leads"}]
    create(troupe, tenant("team-a", ["a-dev"], owners=owners, deletionPolicy=policy))
    with troupe.operator():
        wait_ready(troupe, "team-a")
        troupe.core.create_namespaced_config_map("a-dev", {"metadata": {"name": "users-own"}})
        troupe.custom.delete_cluster_custom_object(GROUP, VERSION, "tenants", "team-a")
        wait_for(lambda: read_tenant(troupe, "team-a") is None, timeout=WAIT, what="Tenant gone")
        kept = namespace(troupe, "a-dev")
        left = children(troupe, "a-dev")
    if policy == "Delete":
        assert kept is None
        return
    assert kept is not None
    labels, annotations = kept["metadata"]["labels"], kept["metadata"].get("annotations") or {}
    assert LABEL not in labels and LABEL not in annotations
    assert labels[f"{PSA}/enforce"] == "restricted"  # releasing loosens nothing
    assert [kind for kind, found in left.items() if found is not None] == []
    assert troupe.core.read_namespaced_config_map("users-own", "a-dev") is not None


# -- who may do what ---------------------------------------------------------------------------

ACCESS = [
    # (who, namespace, may create a Workflow there)
    ("alice", "a-dev", True),
    ("alice", "b-dev", False),
    ("bob", "b-dev", True),
    ("bob", "a-dev", False),
    ("carol", "a-dev", True),  # bound to the standard `edit`, which aggregates troupe-edit
    ("carol", "b-dev", False),
]


def test_owners_may_use_their_namespaces_and_no_other(
    emulator: EmulatedCluster, troupe: Troupe, kube_api_as: ClientAs
) -> None:
    load_troupe_roles(emulator)
    emulator.create(
        {
            "apiVersion": f"{RBAC}/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "edit"},
            "aggregationRule": {
                "clusterRoleSelectors": [{"matchLabels": {f"{RBAC}/aggregate-to-edit": "true"}}]
            },
        }
    )
    for account in ("alice", "bob", "carol"):
        troupe.core.create_namespaced_service_account("default", {"metadata": {"name": account}})

    def owner(name: str) -> list[Body]:
        return [{"kind": "ServiceAccount", "name": name, "namespace": "default"}]

    create(
        troupe,
        tenant("team-a", ["a-dev"], owners=owner("alice")),
        tenant("team-b", ["b-dev"], owners=owner("bob")),
    )
    with troupe.operator():
        wait_ready(troupe, "team-a")
        wait_ready(troupe, "team-b")
        kubernetes.client.RbacAuthorizationV1Api(troupe.api).create_namespaced_role_binding(
            "a-dev",
            {
                "metadata": {"name": "carol-edits"},
                "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": "edit"},
                "subjects": [{"kind": "ServiceAccount", "name": "carol", "namespace": "default"}],
            },
        )
        outcomes = []
        for who, where, _ in ACCESS:
            custom = kubernetes.client.CustomObjectsApi(kube_api_as("default", who))
            run = workflow(f"by-{who}", [{"name": "only"}])
            run["metadata"]["namespace"] = where
            try:
                custom.create_namespaced_custom_object(GROUP, VERSION, where, "workflows", run)
                outcomes.append((who, where, True))
            except kubernetes.client.ApiException as error:
                assert error.status == 403, error
                outcomes.append((who, where, False))
        # An owner edits Troupe's objects, not the namespace's isolation.
        networking = kubernetes.client.NetworkingV1Api(kube_api_as("default", "alice"))
        with pytest.raises(kubernetes.client.ApiException) as refused:
            networking.delete_namespaced_network_policy("troupe-default-deny", "a-dev")
    assert outcomes == ACCESS
    assert refused.value.status == 403


def test_a_task_pods_identity_reaches_nothing_outside_its_own_run(
    troupe: Troupe, kube_api_as: ClientAs
) -> None:
    create(troupe, tenant("team-a", ["a-dev"]), tenant("team-b", ["b-dev"]))
    with OpenAIStub(reply=reply_naming_the_task) as stub, troupe.operator():
        wait_ready(troupe, "team-a")
        wait_ready(troupe, "team-b")
        for body, plural in (
            (agent("worker", stub.base_url), "agents"),
            (workflow("w", [{"name": "only"}]), "workflows"),
        ):
            body["metadata"]["namespace"] = "a-dev"
            troupe.custom.create_namespaced_custom_object(GROUP, VERSION, "a-dev", plural, body)

        def ended() -> Body | None:
            body = troupe.custom.get_namespaced_custom_object(
                GROUP, VERSION, "a-dev", "workflows", "w"
            )
            return body if (body.get("status") or {}).get("phase") in ENDED else None

        body = wait_for(ended, timeout=60, interval=0.1, what="the run to end")
    assert body["status"]["phase"] == "Succeeded"
    run = WorkflowRef("a-dev", "w", body["metadata"]["uid"])
    api = kube_api_as("a-dev", run.task_identity())
    core, custom = kubernetes.client.CoreV1Api(api), kubernetes.client.CustomObjectsApi(api)
    forged = {"metadata": {"name": "forged"}, "data": {"x": "y"}}
    attempts: dict[str, Callable[[], Any]] = {
        "read its own output": lambda: core.read_namespaced_config_map(
            run.output_config_map("only"), "a-dev"
        ),
        "read a Secret of its namespace": lambda: core.list_namespaced_secret("a-dev"),
        "list ConfigMaps of its namespace": lambda: core.list_namespaced_config_map("a-dev"),
        "list ConfigMaps of another tenant": lambda: core.list_namespaced_config_map("b-dev"),
        "write a ConfigMap of another tenant": lambda: core.create_namespaced_config_map(
            "b-dev", forged
        ),
        "read Secrets of another tenant": lambda: core.list_namespaced_secret("b-dev"),
        "list pods of another tenant": lambda: core.list_namespaced_pod("b-dev"),
        "create a Workflow for another tenant": lambda: custom.create_namespaced_custom_object(
            GROUP, VERSION, "b-dev", "workflows", workflow("w", [{"name": "only"}])
        ),
    }
    answers = {}
    for what, attempt in attempts.items():
        try:
            attempt()
            answers[what] = 200
        except kubernetes.client.ApiException as error:
            answers[what] = error.status
    assert answers == {what: 200 if what == "read its own output" else 403 for what in attempts}
