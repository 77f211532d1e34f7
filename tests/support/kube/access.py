"""The API server's filters in front of every handler: authentication, authorization, size.

- `Authorization: Bearer <token>` with a token issued here (`kube.tokens`) authenticates as
  its ServiceAccount; an unknown, expired or revoked token, or any other scheme, is 401;
- a request without credentials is unrestricted, as a cluster admin's: the operator under
  test, kubectl and test clients stay as they were, and least privilege is tested by giving
  a client a token (`EmulatedCluster.token_for`);
- `Impersonate-User` acts as that user (a `system:serviceaccount:<ns>:<name>` gets the
  ServiceAccount's groups, anyone else `system:authenticated`); the impersonator needs
  RBAC's `impersonate` on `serviceaccounts` or `users` (unrestricted clients have it).
  This is how kubectl acts as a ServiceAccount here (`kubectl --as=...`): client-go does
  not send a bearer token to an `http://` server;
- an authenticated request is authorized by RBAC (`kube.rbac`) and refused with 403 and
  kube-apiserver's message, e.g. `configmaps "x" is forbidden: User
  "system:serviceaccount:ns:sa" cannot get resource "configmaps" in API group "" in the
  namespace "ns"`;
- a body over 3 MiB is refused with 413, as kube-apiserver refuses it.

Not emulated: client certificates and basic auth (401), anonymous requests as
`system:anonymous` (no credentials means admin here), `Impersonate-Group` and
`Impersonate-Extra-*` (ignored).
"""

from __future__ import annotations

from typing import NoReturn

import kmock

from tests.support.kube.dispatch import PassOn, header
from tests.support.kube.errors import forbidden, request_too_large, unauthorized
from tests.support.kube.rbac import Authorizer
from tests.support.kube.request_info import RequestInfo
from tests.support.kube.tokens import TokenIssuer, UserInfo

MAX_BODY_BYTES = 3 * 1024 * 1024
_SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"


def _denial(user: UserInfo, info: RequestInfo) -> str:
    who = f'User "{user.username}" cannot {info.verb}'
    if not info.is_resource_request:
        return f'{who} path "{info.path}"'
    what = f'{who} resource "{info.full_resource}" in API group "{info.api_group}"'
    if info.namespace:
        return f'{what} in the namespace "{info.namespace}"'
    return f"{what} at the cluster scope"


def _service_account_of(username: str) -> tuple[str, str] | None:
    prefix, _, rest = username.partition(_SERVICE_ACCOUNT_PREFIX)
    namespace, _, name = rest.partition(":")
    return (namespace, name) if not prefix and namespace and name else None


def _impersonation(username: str) -> RequestInfo:
    """What impersonating `username` asks of RBAC."""
    account = _service_account_of(username)
    if account is not None:
        namespace, name = account
        return RequestInfo(
            "impersonate", "", True, resource="serviceaccounts", namespace=namespace, name=name
        )
    return RequestInfo("impersonate", "", True, resource="users", name=username)


def _impersonated(username: str) -> UserInfo:
    account = _service_account_of(username)
    if account is not None:
        return UserInfo.service_account(*account, uid="")
    return UserInfo(username, groups=("system:authenticated",))


class AccessControl:
    def __init__(self, tokens: TokenIssuer, authorizer: Authorizer) -> None:
        self._tokens = tokens
        self._authorizer = authorizer

    def identify(self, request: kmock.Request) -> UserInfo | None:
        """The request's identity; None for an unrestricted client; 401 for bad credentials."""
        user = self._authenticated(request)
        impersonated = header(request, "Impersonate-User")
        if not impersonated:
            return user
        if user is not None:
            self._authorize(user, _impersonation(impersonated))
        return _impersonated(impersonated)

    async def check(self, request: kmock.Request) -> NoReturn:
        """A kmock payload: refuse the request, or pass it on to be served."""
        user = self.identify(request)
        if user is not None:
            self._authorize(user, RequestInfo.of_request(request))
        if len(request.body) > MAX_BODY_BYTES:
            raise request_too_large(MAX_BODY_BYTES)
        raise PassOn

    def _authenticated(self, request: kmock.Request) -> UserInfo | None:
        credentials = header(request, "Authorization")
        if not credentials:
            return None
        scheme, _, token = credentials.partition(" ")
        issued = self._tokens.authenticate(token.strip()) if scheme.lower() == "bearer" else None
        if issued is None:
            raise unauthorized()
        return issued.user

    def _authorize(self, user: UserInfo, info: RequestInfo) -> None:
        decision = self._authorizer.authorize(user, info)
        if not decision.allowed:
            why = _denial(user, info)
            raise forbidden(
                info.api_group,
                info.resource,
                info.name,
                f"{why}: {decision.reason}" if decision.reason else why,
            )
