"""TokenReview and SubjectAccessReview, asked with the pod's own ServiceAccount.

The two questions serve mode asks the API server about each new caller
(``troupe_agent.invoke_auth`` decides what to do with the answers): who is
this token (``authentication.k8s.io/v1`` TokenReview), and may that user,
with the groups, uid and extra the review returned, ``create`` the
``agents/invoke`` subresource of this Agent (``authorization.k8s.io/v1``
SubjectAccessReview). The pod's ServiceAccount needs ``create`` on both, which
the ``system:auth-delegator`` ClusterRole grants.

With an audience (``troupe_agent.invoke_auth.DEFAULT_AUDIENCE`` unless told
otherwise) the TokenReview asks for it, and the audiences it returns are
checked too: a server that ignored the requested audience would otherwise
accept any token.

Both reviews of one call share ``REVIEW_SECONDS``: each request has a
timeout, and 429, 5xx, timeouts and connection errors are retried (at most
``REVIEW_POLICY.max_retries`` times) within it, then reported as a retryable
:class:`ReviewFailed`. The token goes into the TokenReview body and nowhere
else.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from kubernetes.client import (
    ApiClient,
    AuthenticationV1Api,
    AuthorizationV1Api,
    V1ResourceAttributes,
    V1SubjectAccessReview,
    V1SubjectAccessReviewSpec,
    V1TokenReview,
    V1TokenReviewSpec,
    V1TokenReviewStatus,
    V1UserInfo,
)

from troupe_agent.invoke_auth import ReviewFailed, Verdict, unauthorized
from troupe_agent.kube_api import KubeApiError, KubeCaller
from troupe_agent.retry import Deadline, RetryPolicy
from troupe_operator.api import GROUP
from troupe_operator.api.serve_env import POD_NAMESPACE_ENV

INVOKE_VERB: Final = "create"
INVOKE_RESOURCE: Final = "agents"
INVOKE_SUBRESOURCE: Final = "invoke"

REVIEW_SECONDS: Final = 5.0
"""Time for both reviews of one call, retries included; past it the caller gets a 503."""
REVIEW_POLICY: Final = RetryPolicy(max_retries=2, base_delay=0.1, max_delay=1.0)

NAMESPACE_FILE: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def pod_namespace() -> str | None:
    """The pod's namespace: ``POD_NAMESPACE``, else the mounted ServiceAccount's."""
    if namespace := os.environ.get(POD_NAMESPACE_ENV, "").strip():
        return namespace
    try:
        return NAMESPACE_FILE.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


@dataclass(frozen=True)
class InvokeTarget:
    """The Agent a caller needs permission to invoke."""

    namespace: str
    agent: str

    def attributes(self) -> dict[str, str]:
        return {
            "group": GROUP,
            "resource": INVOKE_RESOURCE,
            "subresource": INVOKE_SUBRESOURCE,
            "verb": INVOKE_VERB,
            "namespace": self.namespace,
            "name": self.agent,
        }

    def forbidden(self, user: str, reason: str) -> Verdict:
        """A 403 in kube-apiserver's words, naming the user and the missing permission."""
        message = (
            f'{INVOKE_RESOURCE}.{GROUP} "{self.agent}" is forbidden: User "{user}" cannot'
            f' {INVOKE_VERB} resource "{INVOKE_RESOURCE}/{INVOKE_SUBRESOURCE}" in API group'
            f' "{GROUP}" in the namespace "{self.namespace}"'
        )
        return Verdict(403, f"{message}: {reason}" if reason else message, user)


class ApiReviews:
    """Reviews tokens and access through the API server (see the module docstring)."""

    def __init__(self, api_client: ApiClient, target: InvokeTarget, audience: str) -> None:
        self._authentication = AuthenticationV1Api(api_client)
        self._authorization = AuthorizationV1Api(api_client)
        self._target = target
        self._audience = audience

    def review(self, token: str) -> Verdict:
        try:
            return self._review(token)
        except KubeApiError as error:
            raise ReviewFailed(str(error), retryable=error.retryable) from error

    def _review(self, token: str) -> Verdict:
        caller = KubeCaller(Deadline(REVIEW_SECONDS), policy=REVIEW_POLICY)
        token_review = V1TokenReview(
            spec=V1TokenReviewSpec(
                token=token, audiences=[self._audience] if self._audience else None
            )
        )
        user = self._user(
            caller.call(
                lambda timeout: self._authentication.create_token_review(
                    token_review, _request_timeout=timeout
                ),
                "reviewing a caller's token (TokenReview)",
            ).status
        )
        if user is None or not user.username:
            audience = f'"{self._audience}"' if self._audience else "the API server's"
            return unauthorized(
                f"the bearer token was not accepted (invalid, expired, revoked, or not issued"
                f" for audience {audience})"
            )
        access_review = V1SubjectAccessReview(
            spec=V1SubjectAccessReviewSpec(
                user=user.username,
                uid=user.uid,
                groups=user.groups,
                extra=user.extra,
                resource_attributes=V1ResourceAttributes(**self._target.attributes()),
            )
        )
        access = caller.call(
            lambda timeout: self._authorization.create_subject_access_review(
                access_review, _request_timeout=timeout
            ),
            f"checking whether {user.username} may invoke the agent (SubjectAccessReview)",
        ).status
        if access is not None and access.allowed and not access.denied:
            return Verdict(200, user=user.username)
        return self._target.forbidden(user.username, (access and access.reason) or "")

    def _user(self, review: V1TokenReviewStatus | None) -> V1UserInfo | None:
        """Who the token is, if the review authenticated it for our audience."""
        if review is None or not review.authenticated or review.user is None:
            return None
        if self._audience and self._audience not in (review.audiences or ()):
            return None
        return review.user
