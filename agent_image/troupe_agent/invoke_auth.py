"""Who may call an agent's ``POST /v1/invoke``: serve mode is not open to the namespace.

It follows kube-rbac-proxy: the caller sends ``Authorization: Bearer <token>``
(a ServiceAccount token); the API server says who that is (a TokenReview) and
whether they may invoke this Agent (a SubjectAccessReview), asked with the
pod's own identity (``troupe_agent.access_reviews``). Who may invoke an Agent
is ordinary RBAC: the verb ``create`` on the subresource ``agents/invoke`` of
the Agent (``apiGroups: [troupe.dev]``, ``resourceNames: [<agent>]``) in the
pod's namespace. Why that rule rather than a custom verb such as ``invoke``:

- kube-apiserver and kube-rbac-proxy call a POST ``create``, and actions on
  an object are subresources one ``create``s (``pods/exec``,
  ``pods/eviction``, ``serviceaccounts/token``);
- ``kubectl create role --verb=create --resource=agents/invoke`` and
  ``kubectl auth can-i create agents --subresource=invoke`` work, while
  ``kubectl create role`` refuses verbs it does not know;
- a subresource needs a rule of its own, so being allowed to write Agents
  (``agents``, any verb) is not being allowed to spend their model budget.

Tokens must be issued for the audience ``troupe.dev/agent``
(``DEFAULT_AUDIENCE``: ``kubectl create token SA --audience troupe.dev/agent``,
or a projected token volume), so that a token a caller hands to an agent is
worth nothing against the API server, and the token every pod has mounted
(the API server's audience) is worth nothing here. ``--token-audience ''``
accepts tokens for the API server's audience instead, as kube-rbac-proxy does
by default.

This module is the gate: it reads the header, keeps the verdicts briefly
(``troupe_agent.token_cache``), and words the answer:

- no token, not a bearer token, or one the API server does not accept: 401 with
  ``WWW-Authenticate: Bearer``;
- authenticated but not allowed: 403, worded as kube-apiserver words its own;
- the API server unavailable (5xx, 429, timeouts, connection errors, retried
  within ``REVIEW_SECONDS``): 503 with ``Retry-After``; the API server refusing
  the agent's own reviews (its ServiceAccount is not bound to
  ``system:auth-delegator``): 500. An outage is never a 401 and never a 200.

It refuses to let a call through on anything but both reviews saying yes, and
to put a token in a log line, a message or the cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Protocol

from troupe_agent.token_cache import TokenCache

DEFAULT_AUDIENCE: Final = "troupe.dev/agent"
RETRY_AFTER_SECONDS: Final = 1
"""What a 503 asks the caller to wait; the reviews behind it were already retried."""

_BEARER: Final = "bearer"


@dataclass(frozen=True)
class Verdict:
    """The answer to one call: 200 (``user`` may invoke), or a refusal with a one-line message."""

    status: int
    message: str = ""
    user: str = ""

    @property
    def allowed(self) -> bool:
        return self.status == 200

    @property
    def headers(self) -> dict[str, str]:
        if self.status == 401:
            return {"WWW-Authenticate": "Bearer"}
        if self.status == 503:
            return {"Retry-After": str(RETRY_AFTER_SECONDS)}
        return {}


class ReviewFailed(Exception):
    """The API server gave no verdict: unavailable (``retryable``), or refusing the agent."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class Reviews(Protocol):
    """What the API server says of a token: 200, 401 or 403; :class:`ReviewFailed` when it
    cannot say."""

    def review(self, token: str) -> Verdict: ...


def unauthorized(why: str) -> Verdict:
    return Verdict(401, f"Unauthorized: {why}")


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else None."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == _BEARER and token and " " not in token else None


class InvokeAuth:
    """Decides each invoke call from its ``Authorization`` header; safe to call from threads."""

    def __init__(self, reviews: Reviews, cache: TokenCache[Verdict] | None = None) -> None:
        self._reviews = reviews
        self._cache: TokenCache[Verdict] = cache or TokenCache()

    def check(self, authorization: str | None) -> Verdict:
        """The verdict on a call; reviews the token unless a recent verdict is cached."""
        token = bearer_token(authorization)
        if token is None:
            return unauthorized("a bearer token is required (Authorization: Bearer <token>)")
        verdict = self._cache.get(token)
        if verdict is not None:
            return verdict
        try:
            verdict = self._reviews.review(token)
        except ReviewFailed as error:
            if error.retryable:
                return Verdict(503, f"cannot check the caller now: {error}")
            return Verdict(500, f"this agent cannot check its callers: {error}")
        self._cache.put(token, verdict)
        return verdict
