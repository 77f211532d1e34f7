"""ServiceAccount tokens and RBAC: the emulator says no where kube-apiserver says no."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import kubernetes
import pytest
from kubernetes.client import (
    ApiClient,
    ApiException,
    AuthenticationV1Api,
    AuthorizationV1Api,
    CoreV1Api,
    RbacAuthorizationV1Api,
    VersionApi,
)

from tests.support.emulator import EmulatedCluster
from tests.support.fixtures import ClientAs
from tests.support.kubectl import kubectl, kubectl_refused

SA_USER = "system:serviceaccount:default:worker"


def _grant(
    kube_api: ApiClient, rules: list[dict[str, Any]], *, cluster: bool = False, name: str = "worker"
) -> None:
    """ServiceAccount `default/worker` bound to a (Cluster)Role with `rules`."""
    core, rbac = CoreV1Api(kube_api), RbacAuthorizationV1Api(kube_api)
    if name == "worker":
        core.create_namespaced_service_account("default", {"metadata": {"name": "worker"}})
    subjects = [{"kind": "ServiceAccount", "name": "worker", "namespace": "default"}]
    role_ref = {"apiGroup": "rbac.authorization.k8s.io", "name": name}
    if cluster:
        rbac.create_cluster_role({"metadata": {"name": name}, "rules": rules})
        rbac.create_cluster_role_binding(
            {
                "metadata": {"name": name},
                "roleRef": {**role_ref, "kind": "ClusterRole"},
                "subjects": subjects,
            }
        )
    else:
        rbac.create_namespaced_role("default", {"metadata": {"name": name}, "rules": rules})
        rbac.create_namespaced_role_binding(
            "default",
            {
                "metadata": {"name": name},
                "roleRef": {**role_ref, "kind": "Role"},
                "subjects": subjects,
            },
        )


def _refusal(call: Any, *args: Any) -> tuple[int, str]:
    with pytest.raises(ApiException) as refused:
        call(*args)
    return refused.value.status, json.loads(refused.value.body)["message"]


def test_namespaces_get_a_default_service_account(kube_api: ApiClient) -> None:
    core = CoreV1Api(kube_api)
    core.create_namespace({"metadata": {"name": "tenant"}})
    assert [sa.metadata.name for sa in core.list_namespaced_service_account("tenant").items] == [
        "default"
    ]


def test_a_token_may_do_what_its_role_grants_and_nothing_more(
    kube_api: ApiClient, kube_api_as: ClientAs
) -> None:
    _grant(kube_api, [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}])
    CoreV1Api(kube_api).create_namespaced_config_map("default", {"metadata": {"name": "x"}})
    worker = CoreV1Api(kube_api_as("default", "worker"))
    assert worker.read_namespaced_config_map("x", "default").metadata.name == "x"
    assert [cm.metadata.name for cm in worker.list_namespaced_config_map("default").items] == ["x"]
    assert _refusal(worker.delete_namespaced_config_map, "x", "default") == (
        403,
        f'configmaps "x" is forbidden: User "{SA_USER}" cannot delete resource "configmaps"'
        ' in API group "" in the namespace "default"',
    )
    assert _refusal(worker.list_namespace) == (
        403,
        f'namespaces is forbidden: User "{SA_USER}" cannot list resource "namespaces"'
        ' in API group "" at the cluster scope',
    )
    assert VersionApi(worker.api_client).get_code().major, "discovery is open to everyone"


def test_tokens_die_with_their_service_account(
    emulator: EmulatedCluster, kube_api: ApiClient, kube_api_as: ClientAs
) -> None:
    core = CoreV1Api(kube_api)
    core.create_namespaced_service_account("default", {"metadata": {"name": "temp"}})
    temp = CoreV1Api(kube_api_as("default", "temp"))
    assert _refusal(temp.list_namespaced_config_map, "default")[0] == 403
    core.delete_namespaced_service_account("temp", "default")
    core.create_namespaced_service_account("default", {"metadata": {"name": "temp"}})
    assert _refusal(temp.list_namespaced_config_map, "default") == (401, "Unauthorized")
    bogus = kubernetes.client.Configuration(
        host=emulator.url, api_key={"authorization": "Bearer nonsense"}
    )
    with ApiClient(bogus) as client:
        assert _refusal(CoreV1Api(client).list_namespaced_config_map, "default")[0] == 401


READ_POD = {"verb": "get", "resource": "pods", "name": "p", "namespace": "default"}


@pytest.mark.parametrize(
    ("rule", "attributes", "allowed"),
    [
        ({"resources": ["pods"], "verbs": ["get"]}, READ_POD, True),
        ({"resources": ["pods"], "verbs": ["list"]}, READ_POD, False),
        ({"resources": ["pods"], "verbs": ["*"]}, {**READ_POD, "verb": "deletecollection"}, True),
        ({"resources": ["*"], "verbs": ["get"]}, READ_POD, True),
        ({"resources": ["pods"], "verbs": ["get"]}, {**READ_POD, "subresource": "status"}, False),
        ({"resources": ["pods/status"], "verbs": ["patch"]}, {**READ_POD, "verb": "patch"}, False),
        (
            {"resources": ["*/status"], "verbs": ["patch"]},
            {**READ_POD, "verb": "patch", "subresource": "status"},
            True,
        ),
        ({"resources": ["pods"], "resourceNames": ["p"], "verbs": ["get"]}, READ_POD, True),
        (
            {"resources": ["pods"], "resourceNames": ["q"], "verbs": ["get"]},
            READ_POD,
            False,
        ),
        (
            {"resources": ["pods"], "resourceNames": ["p"], "verbs": ["list"]},
            {**READ_POD, "verb": "list", "name": ""},
            False,
        ),
        (
            {"resources": ["pods"], "resourceNames": ["p"], "verbs": ["create"]},
            {**READ_POD, "verb": "create", "name": ""},
            False,
        ),
        ({"apiGroups": ["batch"], "resources": ["pods"], "verbs": ["get"]}, READ_POD, False),
        (
            {"apiGroups": ["*"], "resources": ["jobs"], "verbs": ["get"]},
            {**READ_POD, "group": "batch", "resource": "jobs"},
            True,
        ),
        (
            {"resources": ["serviceaccounts/token"], "verbs": ["create"]},
            {"verb": "create", "resource": "serviceaccounts", "subresource": "token", "name": "x"},
            True,
        ),
    ],
)
def test_rules_match_like_kube_apiserver(
    kube_api: ApiClient, rule: dict[str, Any], attributes: dict[str, str], allowed: bool
) -> None:
    _grant(kube_api, [{"apiGroups": [""], **rule}], cluster=True)
    review = {
        "spec": {
            "user": SA_USER,
            "groups": ["system:serviceaccounts", "system:authenticated"],
            "resourceAttributes": {"namespace": "default", **attributes},
        }
    }
    answer = AuthorizationV1Api(kube_api).create_subject_access_review(review)
    assert answer.status.allowed is allowed
    if allowed:
        assert answer.status.reason == (
            'RBAC: allowed by ClusterRoleBinding "worker" of ClusterRole "worker"'
            ' to ServiceAccount "worker/default"'
        )


def test_non_resource_urls_and_the_bootstrap_policy(kube_api: ApiClient) -> None:
    _grant(kube_api, [{"nonResourceURLs": ["/metrics", "/logs/*"], "verbs": ["get"]}], cluster=True)
    authorization = AuthorizationV1Api(kube_api)

    def allowed(path: str, user: str = SA_USER) -> bool:
        review = {
            "spec": {
                "user": user,
                "groups": ["system:authenticated"],
                "nonResourceAttributes": {"path": path, "verb": "get"},
            }
        }
        return bool(authorization.create_subject_access_review(review).status.allowed)

    assert [allowed(p) for p in ("/metrics", "/logs/a", "/logs", "/healthz", "/apis/batch")] == [
        True,
        True,
        False,
        True,
        True,
    ]
    assert not allowed("/metrics", user="someone-else")


def test_role_bindings_grant_cluster_roles_in_their_namespace_only(
    kube_api: ApiClient, kube_api_as: ClientAs
) -> None:
    core, rbac = CoreV1Api(kube_api), RbacAuthorizationV1Api(kube_api)
    core.create_namespace({"metadata": {"name": "elsewhere"}})
    aggregated = {"metadata": {"name": "reader", "labels": {"aggregate-to-reader": "true"}}}
    rbac.create_cluster_role(
        {**aggregated, "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]}]}
    )
    selector = {"clusterRoleSelectors": [{"matchLabels": {"aggregate-to-reader": "true"}}]}
    rbac.create_cluster_role({"metadata": {"name": "aggregate"}, "aggregationRule": selector})
    core.create_namespaced_service_account("default", {"metadata": {"name": "worker"}})
    rbac.create_namespaced_role_binding(
        "default",
        {
            "metadata": {"name": "reads"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "aggregate",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "worker"}],
        },
    )
    worker = CoreV1Api(kube_api_as("default", "worker"))
    assert worker.list_namespaced_secret("default").items == []
    assert _refusal(worker.list_namespaced_secret, "elsewhere")[0] == 403


def test_a_binding_to_a_missing_role_says_so(kube_api: ApiClient, kube_api_as: ClientAs) -> None:
    core, rbac = CoreV1Api(kube_api), RbacAuthorizationV1Api(kube_api)
    core.create_namespaced_service_account("default", {"metadata": {"name": "worker"}})
    rbac.create_namespaced_role_binding(
        "default",
        {
            "metadata": {"name": "dangling"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "gone"},
            "subjects": [{"kind": "ServiceAccount", "name": "worker", "namespace": "default"}],
        },
    )
    worker = CoreV1Api(kube_api_as("default", "worker"))
    status, message = _refusal(worker.list_namespaced_pod, "default")
    assert status == 403
    assert message.endswith(': RBAC: role.rbac.authorization.k8s.io "gone" not found')


def test_token_request_and_token_review(kube_api: ApiClient) -> None:
    core = CoreV1Api(kube_api)
    request = {"spec": {"audiences": ["troupe"], "expirationSeconds": 600}}
    granted = core.create_namespaced_service_account_token("default", "default", request)
    assert granted.status.token and granted.status.expiration_timestamp
    assert (
        _refusal(core.create_namespaced_service_account_token, "nobody", "default", request)[0]
        == 404
    )
    too_short = {"spec": {"expirationSeconds": 599}}
    assert (
        _refusal(core.create_namespaced_service_account_token, "default", "default", too_short)[0]
        == 422
    )
    review = AuthenticationV1Api(kube_api).create_token_review(
        {"spec": {"token": granted.status.token, "audiences": ["troupe"]}}
    )
    assert review.status.authenticated
    assert review.status.user.username == "system:serviceaccount:default:default"
    assert review.status.user.groups == [
        "system:serviceaccounts",
        "system:serviceaccounts:default",
        "system:authenticated",
    ]
    wrong_audience = {"spec": {"token": granted.status.token, "audiences": ["other"]}}
    assert (
        not AuthenticationV1Api(kube_api).create_token_review(wrong_audience).status.authenticated
    )


def test_self_subject_access_review_answers_for_the_caller(
    kube_api: ApiClient, kube_api_as: ClientAs
) -> None:
    _grant(kube_api, [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]}])
    worker = AuthorizationV1Api(kube_api_as("default", "worker"))

    def can(verb: str) -> bool:
        attributes = {"namespace": "default", "verb": verb, "resource": "configmaps"}
        review = {"spec": {"resourceAttributes": attributes}}
        return bool(worker.create_self_subject_access_review(review).status.allowed)

    assert (can("create"), can("delete")) == (True, False)


def test_kubectl_acts_as_a_service_account_by_impersonation(
    kubeconfig: pathlib.Path, kube_api: ApiClient
) -> None:
    _grant(kube_api, [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}])
    as_worker = f"--as={SA_USER}"
    assert kubectl(kubeconfig, as_worker, "get", "configmaps", "-o", "name") == ""
    denied = kubectl_refused(kubeconfig, as_worker, "get", "secrets")
    assert f'User "{SA_USER}" cannot list resource "secrets"' in denied
