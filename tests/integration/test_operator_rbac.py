"""The operator's ClusterRole in ``deploy/operator.yaml`` is all it needs: least privilege, tested.

The Namespace, ServiceAccount, ClusterRole and ClusterRoleBinding of the manifest are loaded
into the emulator as they are (the Deployment is not: the operator runs here as a process),
and the real operator (``kopf run -m troupe_operator.main``, leader election on, its Lease in
``troupe-system``) runs with a token of ``system:serviceaccount:troupe-system:troupe-operator``
and nothing else: every request it and kopf make is authorized by the emulator's RBAC
evaluation, and one the ClusterRole does not grant is answered 403, as kube-apiserver would.
Under that identity, without one 403 or "forbidden" in the operator's log or Events:

- a two-task Workflow succeeds (memoized: a second run is served from the cache entries its
  pods wrote, watched by label, and its third task reads one through the grant the operator
  adds to its Role), and one whose task pod cannot start fails and has its Job deleted; one
  that runs a WorkflowTemplate (watched and indexed) with inputs from a ConfigMap and a
  Secret (read by name) succeeds;
- an Agent with ``replicas: 1`` waits for its missing Secret, then gets its ServiceAccount,
  Role, RoleBinding, ClusterRoleBinding, Service and Deployment; a repeated Event is counted
  on the first; a change of its pods' spec replaces the Deployment; scaled to 0 it loses
  every child.

Each wait fails at once on the first refusal (a test of a missing permission is not a 60 s
timeout), and every request the operator and kopf send is checked to carry the token.

Not emulated: kube-apiserver's escalation prevention on writing RBAC objects (a Role may
grant only what its writer holds, unless the writer may ``escalate``; a binding may refer
only to a role whose permissions its writer holds, unless the writer may ``bind`` it). The
emulator lets the operator create any Role and binding it may create at all, so this module
checks that part itself on what the operator created: every rule of each Role is covered by
the ClusterRole (as ``ConfirmNoEscalation`` requires), and each ClusterRole bound by a
ClusterRoleBinding is one the ClusterRole may ``bind``.
"""

from __future__ import annotations

import pathlib
import re
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import kubernetes
import kubernetes_validate
import pytest
import yaml

from tests.integration.test_agent_serve import (
    agent_status,
    deployment,
    patch_spec,
    read,
    roll_out,
    secret,
    serving_agent,
    template_hash,
    wait_status,
)
from tests.integration.test_workflow_faults import ENDED
from tests.integration.test_workflow_templates import templated
from tests.integration.troupe_driver import (
    STEADY_LEASES,
    OperatorProcess,
    Troupe,
    agent,
    reply_naming_the_task,
    workflow,
)
from tests.support.emulator import EmulatedCluster
from tests.support.jobrunner import JobRunner
from tests.support.kube.rbac import rule_allows
from tests.support.kube.request_info import RequestInfo
from tests.support.openai_stub import OpenAIStub
from tests.support.waiting import wait_for
from troupe_operator.api import CACHE_KEY_LABEL

MANIFEST = pathlib.Path(__file__).resolve().parents[2] / "deploy" / "operator.yaml"
NAMESPACE, ACCOUNT = "troupe-system", "troupe-operator"
RBAC_KINDS = ("Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding")
RBAC_GROUP, RBAC_API = "rbac.authorization.k8s.io", "rbac.authorization.k8s.io/v1"
OPERATOR_AGENTS = ("troupe-operator/", "kopf/")
"""The User-Agents of the operator's own client and of kopf's."""
UNPULLABLE = "registry.invalid/troupe-agent:missing"
"""An image the Job runner cannot pull, so a task's pod cannot start."""
REFUSAL = re.compile(r"forbidden|(?<![,.])\b403\b", re.IGNORECASE)
"""A refusal in the log; not the milliseconds of a timestamp (``12:00:00,403``)."""

Rules = list[dict[str, Any]]
T = TypeVar("T")


def manifest() -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all(MANIFEST.read_text()) if document]


def the(kind: str, name: str = ACCOUNT) -> dict[str, Any]:
    (found,) = [
        document
        for document in manifest()
        if (document["kind"], document["metadata"]["name"]) == (kind, name)
    ]
    return found


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def holds(rules: Rules, verb: str, group: str, resource: str, namespace: str, name: str) -> bool:
    """Whether ``rules`` allow one request, decided by the emulator's RBAC rule matching."""
    plural, _, subresource = resource.partition("/")
    request = RequestInfo(
        verb,
        "",
        True,
        api_group=group,
        resource=plural,
        subresource=subresource,
        namespace=namespace,
        name=name,
    )
    return any(rule_allows(rule, request) for rule in rules)


def not_held(rules: Rules, granted: Rules, namespace: str) -> list[str]:
    """What ``granted`` (a Role's rules) allows that ``rules`` do not: an escalation."""
    return [
        f"{verb} {resource}.{group or 'core'} {name}".rstrip()
        for rule in granted
        for group in rule.get("apiGroups") or ()
        for resource in rule.get("resources") or ()
        for verb in rule.get("verbs") or ()
        for name in rule.get("resourceNames") or [""]
        if not holds(rules, verb, group, resource, namespace, name)
    ]


def refusals(log: str) -> list[str]:
    return [line for line in log.splitlines() if REFUSAL.search(line)]


MEMO = {"maxAge": "1h"}


def cache_entries(troupe: Troupe) -> list[Any]:
    return list(
        troupe.core.list_namespaced_config_map("default", label_selector=CACHE_KEY_LABEL).items
    )


def test_every_document_is_valid_for_kubernetes() -> None:
    for document in manifest():
        kubernetes_validate.validate(document, kubernetes_validate.latest_version(), strict=True)


def test_the_cluster_role_names_everything_it_grants() -> None:
    rules: Rules = the("ClusterRole")["rules"]
    assert [text for text in strings(rules) if "*" in text] == []
    for rule in rules:
        assert not {"escalate", "impersonate"} & set(rule["verbs"]), rule
        if "bind" in rule["verbs"]:
            assert rule["resourceNames"] == ["system:auth-delegator", "troupe-edit"], rule
    binding = the("ClusterRoleBinding")
    assert binding["roleRef"]["name"] == the("ClusterRole")["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": ACCOUNT, "namespace": NAMESPACE}
    ]


def test_the_user_roles_aggregate_into_the_standard_ones() -> None:
    view, edit = the("ClusterRole", "troupe-view"), the("ClusterRole", "troupe-edit")
    aggregate = f"{RBAC_GROUP}/aggregate-to"
    assert view["metadata"]["labels"][f"{aggregate}-view"] == "true"
    assert edit["metadata"]["labels"][f"{aggregate}-edit"] == "true"
    assert edit["metadata"]["labels"][f"{aggregate}-admin"] == "true"
    assert [text for text in strings(view["rules"] + edit["rules"]) if "*" in text] == []
    for verb, resource in [
        ("create", "workflows"),
        ("delete", "agents"),
        ("create", "agents/invoke"),
    ]:
        assert holds(edit["rules"], verb, "troupe.dev", resource, "team", "x")
        assert not holds(view["rules"], verb, "troupe.dev", resource, "team", "x")
    assert holds(view["rules"], "list", "troupe.dev", "workflows", "team", "")
    assert not holds(edit["rules"], "get", "", "secrets", "team", "x")


def test_the_deployment_runs_two_electing_replicas_as_the_bound_account() -> None:
    deployed = the("Deployment")
    pod = deployed["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {variable["name"]: variable for variable in container["env"]}
    assert deployed["metadata"]["namespace"] == NAMESPACE and deployed["spec"]["replicas"] == 2
    assert pod["serviceAccountName"] == ACCOUNT
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["TROUPE_LEADER_ELECT"]["value"] == "true"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    # kopf serves --liveness only after the startup handlers, where a standby waits to lead.
    assert "livenessProbe" not in container


def lease_holder(troupe: Troupe) -> str:
    """Who holds the operator's Lease in its namespace ("" when nobody or no Lease)."""
    coordination = kubernetes.client.CoordinationV1Api(troupe.api)
    try:
        lease: Any = coordination.read_namespaced_lease(ACCOUNT, NAMESPACE)
    except kubernetes.client.ApiException as error:
        if error.status == 404:
            return ""
        raise
    return str(lease.spec.holder_identity or "")


def agent_children(troupe: Troupe, name: str) -> dict[str, dict[str, Any] | None]:
    rbac = kubernetes.client.RbacAuthorizationV1Api(troupe.api)
    bindings = rbac.list_cluster_role_binding(label_selector=f"troupe.dev/agent={name}").items
    return {
        "ServiceAccount": read(troupe, troupe.core.read_namespaced_service_account, name),
        "Role": read(troupe, rbac.read_namespaced_role, name),
        "RoleBinding": read(troupe, rbac.read_namespaced_role_binding, name),
        "ClusterRoleBinding": troupe.api.sanitize_for_serialization(bindings[0])
        if bindings
        else None,
        "Service": read(troupe, troupe.core.read_namespaced_service, name),
        "Deployment": deployment(troupe, name),
    }


def refused_events(troupe: Troupe) -> list[str]:
    """Events saying a write was refused for good (the Agent controller reports a 403 so)."""
    events = troupe.core.list_namespaced_event("default").items
    return [f"{e.reason}: {e.message}" for e in events if REFUSAL.search(e.message or "")]


def until(troupe: Troupe, operator: OperatorProcess, probe: Callable[[], T | None], what: str) -> T:
    """``wait_for(probe)``, failing at once on a refusal in the operator's log or Events."""

    def unrefused() -> T | None:
        refused = refusals(operator.log.read_text()) + refused_events(troupe)
        assert refused == [], "\n".join(refused[:5])
        return probe()

    return wait_for(unrefused, timeout=60, interval=0.1, what=what)


def event_count(troupe: Troupe, involved: str, reason: str) -> int:
    events = troupe.core.list_namespaced_event("default").items
    return sum(
        e.count or 1 for e in events if (e.involved_object.name, e.reason) == (involved, reason)
    )


def operator_process(kubeconfig: pathlib.Path, tmp_path: pathlib.Path) -> OperatorProcess:
    """One replica under deploy/operator.yaml's identity: it must never exit (no short lease)."""
    return OperatorProcess(
        kubeconfig,
        tmp_path / "operator.log",
        "troupe-operator-0",
        pod_namespace=NAMESPACE,
        environment=STEADY_LEASES,
    )


@pytest.mark.timeout(240)
def test_the_operator_needs_nothing_its_cluster_role_does_not_grant(
    emulator: EmulatedCluster, troupe: Troupe, job_runner: JobRunner, tmp_path: pathlib.Path
) -> None:
    for document in manifest():
        if document["kind"] in RBAC_KINDS:
            emulator.create(document)
    token = emulator.token_for(NAMESPACE, ACCOUNT)
    kubeconfig = emulator.write_kubeconfig(tmp_path / "operator.kubeconfig", token=token)
    job_runner.unpullable_images = lambda image: image == UNPULLABLE
    two_tasks = [{"name": "draft"}, {"name": "edit", "dependsOn": ["draft"]}]
    stuck = workflow("cannot-start", [{"name": "only", "agent": "puller"}])
    inputs_from = [
        {"name": "tone", "configMapKeyRef": {"name": "style", "key": "tone"}},
        {"name": "codename", "secretKeyRef": {"name": "project", "key": "codename"}},
    ]
    template = {
        **workflow(
            "two-tasks", [dict(task) for task in two_tasks], inputs={"tone": "", "codename": ""}
        ),
        "kind": "WorkflowTemplate",
    }
    troupe.core.create_namespaced_config_map(
        "default", {"metadata": {"name": "style"}, "data": {"tone": "dry"}}
    )
    troupe.core.create_namespaced_secret(
        "default", {"metadata": {"name": "project"}, "stringData": {"codename": "c"}}
    )

    with OpenAIStub(reply=reply_naming_the_task) as stub:
        puller = agent("puller", stub.base_url)
        puller["spec"]["image"] = UNPULLABLE
        troupe.apply(
            agent("worker", stub.base_url),
            puller,
            workflow("least-privilege", [dict(task) for task in two_tasks], cache=MEMO),
            stuck,
            template,
            templated("from-template", "two-tasks", inputsFrom=inputs_from),
            serving_agent("writer", replicas=1),  # its Secret comes later
        )
        operator = operator_process(kubeconfig, tmp_path)
        operator.start()
        try:
            holder = until(troupe, operator, lambda: lease_holder(troupe), "a Lease holder")
            # (a) Workflows: Jobs, their pods, the run's identity and outputs, status, Events;
            # a WorkflowTemplate from kopf's index, a ConfigMap and a Secret's keys read.
            ended = {
                name: until(
                    troupe,
                    operator,
                    lambda name=name: (s := troupe.status(name)).get("phase") in ENDED and s,
                    f"Workflow {name} to end",
                )
                for name in ("least-privilege", "from-template", "cannot-start")
            }
            status = ended["least-privilege"]
            assert status["phase"] == "Succeeded", status.get("message")
            assert {task: s["attempts"] for task, s in status["tasks"].items()} == {
                "draft": 1,
                "edit": 1,
            }
            resolved = ended["from-template"]
            assert resolved["phase"] == "Succeeded", resolved.get("message")
            # A pod that cannot start: its Job is deleted.
            failed = ended["cannot-start"]
            assert failed["phase"] == "Failed" and "cannot start" in failed["message"], failed
            until(troupe, operator, lambda: not troupe.jobs("cannot-start"), "its Job deleted")
            # Memoized: the cache entries the pods wrote are watched (by label); a later run
            # is served from them, and its task reading one gets it through its Role.
            until(troupe, operator, lambda: len(cache_entries(troupe)) == 2, "2 cache entries")
            three = [
                *(dict(task) for task in two_tasks),
                {"name": "publish", "dependsOn": ["edit"]},
            ]
            troupe.apply(workflow("served", three, cache=MEMO))
            served = until(
                troupe,
                operator,
                lambda: (s := troupe.status("served")).get("phase") in ENDED and s,
                "Workflow served to end",
            )
            assert served["phase"] == "Succeeded", served.get("message")
            assert [t.get("reason") for t in served["tasks"].values()] == ["Cached", "Cached", None]

            # (b) A serving Agent: its Secret read, every child created, replaced, deleted.
            until(
                troupe,
                operator,
                lambda: event_count(troupe, "writer", "SecretNotFound") == 1,
                "SecretNotFound on Agent writer",
            )
            troupe.core.create_namespaced_secret("default", secret())
            children = until(
                troupe,
                operator,
                lambda: all((found := agent_children(troupe, "writer")).values()) and found,
                "every child of Agent writer",
            )
            roll_out(troupe, "writer", 1)
            until(
                troupe,
                operator,
                lambda: agent_status(troupe, "writer").get("phase") == "Ready",
                "Agent writer Ready",
            )
            roles = emulator.objects(RBAC_API, "roles")
            cluster_role_bindings = emulator.objects(RBAC_API, "clusterrolebindings")

            # The same Event again is counted on the first: read (or remembered) and patched.
            troupe.core.delete_namespaced_secret("llm", "default")
            first = template_hash(troupe, "writer")
            patch_spec(troupe, "writer", {"systemPrompt": "Write tersely."})
            until(
                troupe,
                operator,
                lambda: event_count(troupe, "writer", "SecretNotFound") == 2,
                "SecretNotFound counted twice",
            )
            troupe.core.create_namespaced_secret("default", secret())
            until(
                troupe,
                operator,
                lambda: template_hash(troupe, "writer") not in (None, first),
                "the Deployment replaced",
            )
            patch_spec(troupe, "writer", {"replicas": 0})
            until(
                troupe,
                operator,
                lambda: not any(agent_children(troupe, "writer").values()),
                "every child of Agent writer deleted",
            )
            wait_status(troupe, "writer", "Ready with no pods", phase="Ready", replicas=0)
        finally:
            operator.stop()

    # (c) Not one refusal.
    log = operator.log.read_text()
    assert refusals(log) + refused_events(troupe) == [], log[-4000:]
    assert operator.exits == [], log[-4000:]
    assert holder.startswith("troupe-operator-0_")
    assert children["ClusterRoleBinding"]["roleRef"]["name"] == "system:auth-delegator"

    # Every request of the operator and of kopf carried the ServiceAccount's token.
    requests = [
        request
        for request in list(emulator.handler)
        if str(request.headers.get("User-Agent", "")).startswith(OPERATOR_AGENTS)
    ]
    assert {str(request.headers.get("Authorization")) for request in requests} == {
        f"Bearer {token}"
    }

    # What the emulator does not check: the operator grants and binds only what it holds.
    rules: Rules = the("ClusterRole")["rules"]
    granted = {(role["metadata"]["namespace"], role["metadata"]["name"]) for role in roles}
    assert len(granted) == 5 and ("default", "writer") in granted, granted  # 4 runs, 1 Agent
    served_role = next(r for r in roles if r["metadata"]["name"].startswith("served-"))
    reads = [r for r in served_role["rules"] if r["verbs"] == ["get"]]
    assert [sorted(r["resourceNames"]) for r in reads] == [
        sorted(task["cached"]["entry"] for task in served["tasks"].values() if "cached" in task)
    ], "get on exactly the entries it was served from"
    assert len(cache_entries(troupe)) == 3, "publish ran, and cached its own output"
    for role in roles:
        assert not_held(rules, role["rules"], role["metadata"]["namespace"]) == [], role
    bound = [b["roleRef"] for b in cluster_role_bindings if b["metadata"]["name"] != ACCOUNT]
    assert bound == [
        {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": "system:auth-delegator"}
    ]
    assert holds(rules, "bind", RBAC_GROUP, "clusterroles", "", "system:auth-delegator")


def tenant_ready(troupe: Troupe, name: str) -> dict[str, Any] | None:
    try:
        body: dict[str, Any] = troupe.custom.get_cluster_custom_object(
            "troupe.dev", "v1alpha1", "tenants", name
        )
    except kubernetes.client.ApiException as error:
        if error.status == 404:
            return None
        raise
    ready = {c["type"]: c for c in (body.get("status") or {}).get("conditions") or ()}
    return body if ready.get("Ready", {}).get("status") == "True" else None


def tenant_gone(troupe: Troupe, name: str) -> bool:
    try:
        troupe.custom.get_cluster_custom_object("troupe.dev", "v1alpha1", "tenants", name)
    except kubernetes.client.ApiException as error:
        if error.status == 404:
            return True
        raise
    return False


def network_policy(troupe: Troupe, namespace: str, name: str) -> Any:
    networking = kubernetes.client.NetworkingV1Api(troupe.api)
    try:
        return networking.read_namespaced_network_policy(name, namespace)
    except kubernetes.client.ApiException as error:
        if error.status == 404:
            return None
        raise


@pytest.mark.timeout(240)  # like the Workflow test: a loaded machine starts the operator slowly
def test_the_tenant_controller_needs_nothing_its_cluster_role_does_not_grant(
    emulator: EmulatedCluster, troupe: Troupe, tmp_path: pathlib.Path
) -> None:
    """Under the operator's identity: a Tenant that creates a namespace and adopts one, its
    children written, one repaired, then Retain (labels removed, children deleted) and Delete
    (namespaces deleted)."""
    for document in manifest():
        if document["kind"] in RBAC_KINDS:
            emulator.create(document)
    token = emulator.token_for(NAMESPACE, ACCOUNT)
    kubeconfig = emulator.write_kubeconfig(tmp_path / "operator.kubeconfig", token=token)
    emulator.create_namespace("keep-old")  # unlabelled and empty: adopted
    owners = [{"kind": "Group", "name": "leads"}]
    for name, namespaces, policy in [
        ("keep", ["keep-new", "keep-old"], "Retain"),
        ("drop", ["drop-new"], "Delete"),
    ]:
        troupe.custom.create_cluster_custom_object(
            "troupe.dev",
            "v1alpha1",
            "tenants",
            {
                "apiVersion": "troupe.dev/v1alpha1",
                "kind": "Tenant",
                "metadata": {"name": name},
                "spec": {
                    "namespaces": namespaces,
                    "owners": owners,
                    "quota": {"pods": 10},
                    "deletionPolicy": policy,
                },
            },
        )
    operator = operator_process(kubeconfig, tmp_path)
    operator.start()
    try:
        until(troupe, operator, lambda: tenant_ready(troupe, "keep"), "Tenant keep Ready")
        until(troupe, operator, lambda: tenant_ready(troupe, "drop"), "Tenant drop Ready")
        role_bindings = emulator.objects(RBAC_API, "rolebindings")
        first = network_policy(troupe, "keep-old", "troupe-egress")
        kubernetes.client.NetworkingV1Api(troupe.api).delete_namespaced_network_policy(
            "troupe-egress", "keep-old"
        )
        until(
            troupe,
            operator,
            lambda: (
                (again := network_policy(troupe, "keep-old", "troupe-egress"))
                and again.metadata.uid != first.metadata.uid
            ),
            "the NetworkPolicy repaired",
        )
        for name in ("keep", "drop"):
            troupe.custom.delete_cluster_custom_object("troupe.dev", "v1alpha1", "tenants", name)
        until(
            troupe,
            operator,
            lambda: tenant_gone(troupe, "keep") and tenant_gone(troupe, "drop"),
            "both Tenants cleaned up and gone",
        )
    finally:
        operator.stop()

    log = operator.log.read_text()
    assert refusals(log) + refused_events(troupe) == [], log[-4000:]
    assert operator.exits == [], log[-4000:]
    kept = {ns.metadata.name: ns.metadata.labels or {} for ns in troupe.core.list_namespace().items}
    assert "drop-new" not in kept
    assert "troupe.dev/tenant" not in kept["keep-new"] | kept["keep-old"]
    assert network_policy(troupe, "keep-old", "troupe-default-deny") is None

    # What the emulator does not check: the operator binds only ClusterRoles it may bind.
    rules: Rules = the("ClusterRole")["rules"]
    bound = {
        binding["roleRef"]["name"]
        for binding in role_bindings
        if binding["roleRef"]["kind"] == "ClusterRole"
    }
    assert bound == {"troupe-edit"}
    assert holds(rules, "bind", RBAC_GROUP, "clusterroles", "", "troupe-edit")
