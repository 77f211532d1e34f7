"""Serve mode's invoke gate against the emulator's TokenReview, SubjectAccessReview and RBAC.

The agent reviews callers with its own ServiceAccount (a kubeconfig with its token, as
`kube_api.connect` reads it outside a pod), bound to a `system:auth-delegator` made here (the
emulator stores no bootstrap ClusterRoles). Callers are ServiceAccounts with tokens for the
agent's audience; who may invoke is a Role granting `create` on `agents/invoke`.
"""

from __future__ import annotations

import logging
import pathlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from kubernetes.client import ApiClient, CoreV1Api, RbacAuthorizationV1Api

from tests.integration.agent_server import RunningServer, serving
from tests.support.emulator import EmulatedCluster
from tests.support.kube.faults import Target
from troupe_agent.access_reviews import ApiReviews, InvokeTarget
from troupe_agent.agent import Agent, AgentOptions
from troupe_agent.invoke_auth import DEFAULT_AUDIENCE, InvokeAuth
from troupe_agent.kube_api import SERVE_USER_AGENT, connect
from troupe_agent.logs import OneLineScrubbingFormatter
from troupe_agent.metrics import ServeMetrics
from troupe_agent.scripted import PLACEHOLDER_BANNER
from troupe_agent.serve import ServeConfigError, connect_invoke_auth, create_app
from troupe_agent.token_cache import TokenCache
from troupe_operator.api import AgentSpec

AGENT = "writer"
AGENT_SA = "writer-agent"
RBAC = "rbac.authorization.k8s.io"
STRANGER = "system:serviceaccount:default:stranger"
FORBIDDEN = (
    f'agents.troupe.dev "{AGENT}" is forbidden: User "{{user}}" cannot create resource'
    ' "agents/invoke" in API group "troupe.dev" in the namespace "default"'
)
INVOKE_RULE = {
    "apiGroups": ["troupe.dev"],
    "resources": ["agents/invoke"],
    "resourceNames": [AGENT],
    "verbs": ["create"],
}
EDIT_AGENTS = {"apiGroups": ["troupe.dev"], "resources": ["agents"], "verbs": ["*"]}


def _bind(kube_api: ApiClient, account: str, rules: list[dict[str, Any]]) -> None:
    """ServiceAccount `default/account`, bound to a Role with `rules` if there are any."""
    CoreV1Api(kube_api).create_namespaced_service_account(
        "default", {"metadata": {"name": account}}
    )
    if not rules:
        return
    rbac = RbacAuthorizationV1Api(kube_api)
    rbac.create_namespaced_role("default", {"metadata": {"name": account}, "rules": rules})
    rbac.create_namespaced_role_binding(
        "default",
        {
            "metadata": {"name": account},
            "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": account},
            "subjects": [{"kind": "ServiceAccount", "name": account}],
        },
    )


def _delegate_auth(kube_api: ApiClient) -> None:
    """The agent's ServiceAccount bound to `system:auth-delegator`, with the rules it has."""
    rbac = RbacAuthorizationV1Api(kube_api)
    rules = [
        {
            "apiGroups": ["authentication.k8s.io"],
            "resources": ["tokenreviews"],
            "verbs": ["create"],
        },
        {
            "apiGroups": ["authorization.k8s.io"],
            "resources": ["subjectaccessreviews"],
            "verbs": ["create"],
        },
    ]
    rbac.create_cluster_role({"metadata": {"name": "system:auth-delegator"}, "rules": rules})
    rbac.create_cluster_role_binding(
        {
            "metadata": {"name": AGENT_SA},
            "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": "system:auth-delegator"},
            "subjects": [{"kind": "ServiceAccount", "name": AGENT_SA, "namespace": "default"}],
        }
    )


def _token(kube_api: ApiClient, account: str, audience: str = DEFAULT_AUDIENCE) -> str:
    request = {"spec": {"audiences": [audience], "expirationSeconds": 600}}
    granted = CoreV1Api(kube_api).create_namespaced_service_account_token(
        account, "default", request
    )
    token: str = granted.status.token
    return token


def _scripted_agent(metrics: ServeMetrics) -> Agent:
    spec = AgentSpec.model_validate({"role": "planner"})
    return Agent(AGENT, spec, None, AgentOptions(observers=[metrics]))


@pytest.fixture
def as_agent_pod(
    emulator: EmulatedCluster,
    kube_api: ApiClient,
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
) -> str:
    """The environment of an agent pod outside a cluster: its token in KUBECONFIG, its
    namespace in POD_NAMESPACE. The agent's token, which must never show."""
    _bind(kube_api, AGENT_SA, [])
    _delegate_auth(kube_api)
    _bind(kube_api, "caller", [INVOKE_RULE])
    _bind(kube_api, "editor", [EDIT_AGENTS])
    _bind(kube_api, "stranger", [])
    token = emulator.token_for("default", AGENT_SA)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(emulator.write_kubeconfig(tmp_path / "kc", token=token)))
    monkeypatch.setenv("POD_NAMESPACE", "default")
    return token


@pytest.fixture
def serve(as_agent_pod: str) -> Iterator[RunningServer]:
    auth = connect_invoke_auth(AGENT, DEFAULT_AUDIENCE)
    with serving(create_app(_scripted_agent, auth=auth)) as running:
        yield running


def _invoke(serve: RunningServer, authorization: str | None) -> httpx.Response:
    headers = {"Authorization": authorization} if authorization is not None else {}
    return httpx.post(f"{serve.url}/v1/invoke", json={"prompt": "x"}, headers=headers, timeout=30)


@pytest.mark.parametrize(
    ("credentials", "status", "error"),
    [
        (None, 401, "Unauthorized: a bearer token is required"),
        ("Basic dXNlcjpwYXNz", 401, "Unauthorized: a bearer token is required"),
        ("Bearer not-a-token", 401, "Unauthorized: the bearer token was not accepted"),
        ("api-audience:caller", 401, f'not issued for audience "{DEFAULT_AUDIENCE}"'),
        ("token:stranger", 403, FORBIDDEN.format(user=STRANGER)),
        ("token:editor", 403, 'User "system:serviceaccount:default:editor" cannot create'),
        ("token:caller", 200, None),
    ],
)
def test_invoke_needs_a_token_whose_account_may_invoke_the_agent(
    serve: RunningServer,
    emulator: EmulatedCluster,
    kube_api: ApiClient,
    credentials: str | None,
    status: int,
    error: str | None,
) -> None:
    header = credentials
    if credentials is not None and ":" in credentials:
        kind, account = credentials.split(":")
        token = (
            _token(kube_api, account) if kind == "token" else emulator.token_for("default", account)
        )
        header = f"Bearer {token}"
    response = _invoke(serve, header)
    assert response.status_code == status, response.text
    if error is None:
        assert response.json()["output"].startswith(PLACEHOLDER_BANNER)
        return
    assert error in response.json()["error"]
    assert "\n" not in response.json()["error"]
    assert ("WWW-Authenticate" in response.headers) is (status == 401)
    if status == 401:
        assert response.headers["WWW-Authenticate"] == "Bearer"


def test_health_readiness_and_metrics_stay_open(serve: RunningServer) -> None:
    assert _invoke(serve, None).status_code == 401
    for path in ("/healthz", "/readyz", "/metrics"):
        assert httpx.get(f"{serve.url}{path}").status_code == 200, path
    metrics = httpx.get(f"{serve.url}/metrics").text
    assert 'troupe_agent_requests_total{code="401",route="/v1/invoke"} 1.0' in metrics


@pytest.mark.parametrize(
    ("resource", "status"),
    [("tokenreviews", 500), ("tokenreviews", 429), ("subjectaccessreviews", 503)],
)
def test_an_api_outage_is_503_with_retry_after_never_401(
    serve: RunningServer, emulator: EmulatedCluster, kube_api: ApiClient, resource: str, status: int
) -> None:
    fault = emulator.faults.fail(
        Target("troupe-agent/serve", verbs={"create"}, resource=resource), status
    )
    token = _token(kube_api, "caller")
    response = _invoke(serve, f"Bearer {token}")
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "1"
    assert response.json()["error"].startswith("cannot check the caller now:")
    assert fault.injected == 3, "tried once, retried twice"
    emulator.faults.clear()
    assert _invoke(serve, f"Bearer {token}").status_code == 200, "an outage is not cached"


def test_an_agent_that_may_not_review_tokens_answers_500(
    serve: RunningServer, kube_api: ApiClient
) -> None:
    RbacAuthorizationV1Api(kube_api).delete_cluster_role_binding(AGENT_SA)
    response = _invoke(serve, f"Bearer {_token(kube_api, 'caller')}")
    assert response.status_code == 500
    assert response.json()["error"].startswith("this agent cannot check its callers: HTTP 403")


@pytest.fixture
def serve_remembering(as_agent_pod: str) -> Iterator[RunningServer]:
    """Serve mode whose verdicts outlast the test: a burst on a loaded machine may take longer
    than the default 5 s, and what is tested is that a cached verdict is not reviewed again."""
    reviews = ApiReviews(
        connect(SERVE_USER_AGENT), InvokeTarget("default", AGENT), DEFAULT_AUDIENCE
    )
    auth = InvokeAuth(reviews, TokenCache(ttl=600))
    with serving(create_app(_scripted_agent, auth=auth)) as running:
        yield running


def test_a_burst_costs_one_review_and_no_token_shows_anywhere(
    serve_remembering: RunningServer,
    emulator: EmulatedCluster,
    kube_api: ApiClient,
    as_agent_pod: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    serve = serve_remembering
    caplog.set_level(logging.DEBUG)
    reviews = emulator.faults.delay(Target("troupe-agent/serve", resource="tokenreviews"), 0)
    tokens = [as_agent_pod, *(_token(kube_api, sa) for sa in ("caller", "stranger", "caller"))]
    bodies = [_invoke(serve, f"Bearer {tokens[1]}").text for _ in range(20)]
    assert reviews.injected == 1
    bodies.append(_invoke(serve, f"Bearer {tokens[2]}").text)
    emulator.faults.fail(Target("troupe-agent/serve", resource="subjectaccessreviews"), 500)
    bodies.append(_invoke(serve, f"Bearer {tokens[3]}").text)
    bodies.append(httpx.get(f"{serve.url}/metrics").text)
    formatter = OneLineScrubbingFormatter()
    lines = [formatter.format(record) for record in caplog.records]
    assert any("invoke by system:serviceaccount:default:caller" in line for line in lines)
    assert any("invoke refused (403)" in line for line in lines)
    assert any("invoke refused (503)" in line for line in lines)
    for text in bodies + lines:
        for token in tokens:
            assert token not in text


def test_serve_mode_refuses_to_start_without_an_api_to_check_callers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    with pytest.raises(ServeConfigError, match="--insecure-no-auth") as refused:
        connect_invoke_auth(AGENT, DEFAULT_AUDIENCE)
    assert "\n" not in str(refused.value)
