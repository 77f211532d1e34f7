"""The identity APIs: TokenRequest, TokenReview, SubjectAccessReview, SelfSubjectAccessReview.

- `POST /api/v1/namespaces/{ns}/serviceaccounts/{name}/token`: a token for an existing
  ServiceAccount (404 otherwise), `expirationSeconds` (default 3600, at least 600),
  `audiences`, and `boundObjectRef` to a Pod or Secret whose deletion revokes the token;
- `POST /apis/authentication.k8s.io/v1/tokenreviews`: who a token is (audiences checked);
- `POST /apis/authorization.k8s.io/v1/subjectaccessreviews`: would RBAC allow this user
  and groups this request; `selfsubjectaccessreviews`: the same for the caller (what
  `kubectl auth can-i` asks). An unrestricted caller is allowed everything.

These are reviews, not stored objects: each answer is computed and nothing is kept (a GET
on them is 404 here, 405 on a real server). Who may call them is RBAC's business, as for
any request. Not served: LocalSubjectAccessReview, SelfSubjectRulesReview.
"""

from __future__ import annotations

from typing import Any

import kmock

from tests.support.kube.errors import conflict_with, invalid
from tests.support.kube.rbac import Authorizer
from tests.support.kube.request_info import RequestInfo
from tests.support.kube.resources import KubeObject, ResourceRegistry, ResourceType
from tests.support.kube.store import ObjectStore, now_timestamp
from tests.support.kube.tokens import API_AUDIENCE, TokenIssuer, UserInfo

_DEFAULT_EXPIRATION = 3600
_MIN_EXPIRATION = 600
_TOKEN_REQUEST = ResourceType(
    group="authentication.k8s.io",
    version="v1",
    plural="tokenrequests",
    kind="TokenRequest",
    namespaced=True,
)
_SUBJECT_ACCESS_REVIEW = ResourceType(
    group="authorization.k8s.io",
    version="v1",
    plural="subjectaccessreviews",
    kind="SubjectAccessReview",
    namespaced=False,
)
REVIEWS = (
    ("authentication.k8s.io", "tokenreviews", "TokenReview"),
    ("authorization.k8s.io", "subjectaccessreviews", "SubjectAccessReview"),
    ("authorization.k8s.io", "selfsubjectaccessreviews", "SelfSubjectAccessReview"),
)
_BOUND_KINDS = {"Pod": "pods", "Secret": "secrets"}


def register_discovery(resources: kmock.ResourcesArray) -> None:
    """List the review APIs in discovery, as create-only cluster-scoped resources."""
    for group, plural, kind in REVIEWS:
        resources[kmock.resource(group, "v1", plural)] = kmock.ResourceInfo(
            kind=kind, singular=kind.lower(), namespaced=False, verbs=("create",)
        )


def _reply(kind: str, group: str, body: KubeObject, status: KubeObject) -> KubeObject:
    return {
        "kind": kind,
        "apiVersion": f"{group}/v1",
        "metadata": {"creationTimestamp": None},
        "spec": body.get("spec") or {},
        "status": status,
    }


def _attributes(spec: KubeObject) -> RequestInfo:
    resource, non_resource = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
    if (resource is None) == (non_resource is None):
        raise invalid(
            _SUBJECT_ACCESS_REVIEW,
            "",
            [
                (
                    "spec.resourceAttributes",
                    "Required value: exactly one of nonResourceAttributes or resourceAttributes"
                    " must be specified",
                )
            ],
        )
    if non_resource is not None:
        return RequestInfo(verb=non_resource.get("verb", ""), path=non_resource.get("path", ""))
    assert resource is not None
    return RequestInfo(
        verb=resource.get("verb", ""),
        path="",
        is_resource_request=True,
        api_group=resource.get("group", ""),
        api_version=resource.get("version", ""),
        resource=resource.get("resource", ""),
        subresource=resource.get("subresource", ""),
        namespace=resource.get("namespace", ""),
        name=resource.get("name", ""),
    )


class AuthApi:
    def __init__(
        self,
        store: ObjectStore,
        registry: ResourceRegistry,
        tokens: TokenIssuer,
        authorizer: Authorizer,
    ) -> None:
        self._store = store
        self._registry = registry
        self._tokens = tokens
        self._authorizer = authorizer

    def token_request(self, namespace: str, name: str, body: KubeObject) -> KubeObject:
        account = self._store.get(self._type("serviceaccounts"), namespace, name)
        spec: dict[str, Any] = dict(body.get("spec") or {})
        seconds = int(spec.get("expirationSeconds") or _DEFAULT_EXPIRATION)
        if seconds < _MIN_EXPIRATION:
            raise invalid(
                _TOKEN_REQUEST,
                name,
                [
                    (
                        "spec.expirationSeconds",
                        f"Invalid value: {seconds}: may not specify a duration less than 10"
                        " minutes",
                    )
                ],
            )
        audiences = tuple(spec.get("audiences") or (API_AUDIENCE,))
        bound = spec.get("boundObjectRef")
        token, issued = self._tokens.issue(
            UserInfo.service_account(namespace, name, account["metadata"]["uid"]),
            expiration_seconds=seconds,
            audiences=audiences,
            bound_uid=self._bound_uid(namespace, bound) if bound else None,
        )
        spec.update(audiences=list(audiences), expirationSeconds=seconds, boundObjectRef=bound)
        return {
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "creationTimestamp": now_timestamp(),
            },
            "spec": spec,
            "status": {
                "token": token,
                "expirationTimestamp": issued.expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
        }

    def token_review(self, body: KubeObject) -> KubeObject:
        spec = body.get("spec") or {}
        issued = self._tokens.authenticate(spec.get("token") or "")
        wanted = set(spec.get("audiences") or [API_AUDIENCE])
        if issued is None or not wanted & set(issued.audiences):
            status: KubeObject = {"user": {}, "error": "invalid bearer token"}
        else:
            audiences = sorted(wanted & set(issued.audiences))
            status = {"authenticated": True, "user": issued.user.as_dict(), "audiences": audiences}
        return _reply("TokenReview", "authentication.k8s.io", body, status)

    def subject_access_review(self, body: KubeObject) -> KubeObject:
        spec = body.get("spec") or {}
        if not spec.get("user") and not spec.get("groups"):
            raise invalid(
                _SUBJECT_ACCESS_REVIEW,
                "",
                [
                    (
                        "spec.user",
                        'Invalid value: "": at least one of user or group must be specified',
                    )
                ],
            )
        user = UserInfo(spec.get("user", ""), spec.get("uid", ""), tuple(spec.get("groups") or ()))
        return self._review("SubjectAccessReview", body, user)

    def self_subject_access_review(self, body: KubeObject, caller: UserInfo | None) -> KubeObject:
        return self._review("SelfSubjectAccessReview", body, caller)

    def _review(self, kind: str, body: KubeObject, user: UserInfo | None) -> KubeObject:
        info = _attributes(body.get("spec") or {})
        if user is None:
            status = {"allowed": True, "reason": "unrestricted client (no credentials)"}
        else:
            decision = self._authorizer.authorize(user, info)
            status = {"allowed": decision.allowed, "reason": decision.reason}
        return _reply(kind, "authorization.k8s.io", body, status)

    def _bound_uid(self, namespace: str, reference: KubeObject) -> str:
        plural = _BOUND_KINDS.get(reference.get("kind", ""))
        if plural is None:
            raise invalid(
                _TOKEN_REQUEST,
                "",
                [
                    (
                        "spec.boundObjectRef.kind",
                        f'Unsupported value: "{reference.get("kind")}": supported values:'
                        ' "Pod", "Secret"',
                    )
                ],
            )
        bound = self._store.get(self._type(plural), namespace, reference.get("name", ""))
        uid: str = bound["metadata"]["uid"]
        if reference.get("uid") and reference["uid"] != uid:
            raise conflict_with(
                f"the UID in the bound object reference ({reference['uid']}) does not match the"
                " UID in record. The object might have been deleted and then recreated"
            )
        return uid

    def _type(self, plural: str) -> ResourceType:
        rtype = self._registry.find("", "v1", plural)
        assert rtype is not None  # core kinds are built in
        return rtype
