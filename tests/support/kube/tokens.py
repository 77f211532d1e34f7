"""ServiceAccount tokens: issued through the TokenRequest API, checked on every request.

A token authenticates as `system:serviceaccount:<namespace>:<name>`, in the groups
`system:serviceaccounts`, `system:serviceaccounts:<namespace>` and `system:authenticated`,
and stops working, as a bound token on a real cluster does, when it expires, when its
ServiceAccount is deleted (even if one of the same name is created again), or when the
object it is bound to (a Pod, a Secret) is deleted.

Tokens are opaque random strings, not signed JWTs: nothing here reads their claims, and an
opaque token cannot be forged by editing one. Not emulated: legacy Secret-based tokens,
audience checks (audiences are recorded and reported by TokenReview, never enforced), and
the `--service-account-max-token-expiration` cap.
"""

from __future__ import annotations

import datetime
import secrets
from collections.abc import Callable
from dataclasses import dataclass

API_AUDIENCE = "https://kubernetes.default.svc.cluster.local"


@dataclass(frozen=True)
class UserInfo:
    """An authenticated identity, as authentication.k8s.io's `UserInfo` describes it."""

    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()

    @classmethod
    def service_account(cls, namespace: str, name: str, uid: str) -> UserInfo:
        return cls(
            username=f"system:serviceaccount:{namespace}:{name}",
            uid=uid,
            groups=(
                "system:serviceaccounts",
                f"system:serviceaccounts:{namespace}",
                "system:authenticated",
            ),
        )

    def as_dict(self) -> dict[str, object]:
        return {"username": self.username, "uid": self.uid, "groups": list(self.groups)}


@dataclass(frozen=True)
class IssuedToken:
    user: UserInfo
    expires: datetime.datetime
    audiences: tuple[str, ...]
    bound_uid: str | None
    """The uid of the object the token dies with (a Pod, a Secret), if any."""


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class TokenIssuer:
    """Issues tokens and authenticates them; `is_alive(uid)` says whether an object exists."""

    def __init__(self, is_alive: Callable[[str], bool]) -> None:
        self._is_alive = is_alive
        self._issued: dict[str, IssuedToken] = {}

    def issue(
        self,
        user: UserInfo,
        *,
        expiration_seconds: int,
        audiences: tuple[str, ...] = (API_AUDIENCE,),
        bound_uid: str | None = None,
    ) -> tuple[str, IssuedToken]:
        token = "emulated-" + secrets.token_urlsafe(32)
        issued = IssuedToken(
            user=user,
            expires=_now() + datetime.timedelta(seconds=expiration_seconds),
            audiences=audiences,
            bound_uid=bound_uid,
        )
        self._issued[token] = issued
        return token, issued

    def authenticate(self, token: str) -> IssuedToken | None:
        """The token's grant if it is still valid, else None (and it is forgotten)."""
        issued = self._issued.get(token)
        if issued is None:
            return None
        alive = self._is_alive(issued.user.uid) and (
            issued.bound_uid is None or self._is_alive(issued.bound_uid)
        )
        if alive and issued.expires > _now():
            return issued
        del self._issued[token]
        return None
