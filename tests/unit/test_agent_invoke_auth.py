"""The invoke gate without an API server: headers, the verdict cache's bounds, outages."""

from __future__ import annotations

import pytest

from troupe_agent.invoke_auth import (
    RETRY_AFTER_SECONDS,
    InvokeAuth,
    ReviewFailed,
    Verdict,
    bearer_token,
)
from troupe_agent.token_cache import TokenCache

ALLOWED = Verdict(200, user="system:serviceaccount:default:caller")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeReviews:
    """Answers every token with `verdict` (or raises `failure`), counting the reviews."""

    def __init__(self, verdict: Verdict = ALLOWED, failure: ReviewFailed | None = None) -> None:
        self.verdict, self.failure = verdict, failure
        self.reviewed: list[str] = []

    def review(self, token: str) -> Verdict:
        self.reviewed.append(token)
        if self.failure is not None:
            raise self.failure
        return self.verdict


@pytest.mark.parametrize(
    ("header", "token"),
    [
        (None, None),
        ("", None),
        ("Bearer", None),
        ("Bearer   ", None),
        ("Basic dXNlcjpwYXNz", None),
        ("Bearer two words", None),
        ("Bearer abc.def", "abc.def"),
        ("bearer  abc ", "abc"),
    ],
)
def test_only_a_bearer_token_is_a_token(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


@pytest.mark.parametrize("header", [None, "Basic dXNlcjpwYXNz", "Bearer "])
def test_no_token_is_401_without_asking_the_api(header: str | None) -> None:
    reviews = FakeReviews()
    verdict = InvokeAuth(reviews).check(header)
    assert (verdict.status, verdict.headers) == (401, {"WWW-Authenticate": "Bearer"})
    assert verdict.message.startswith("Unauthorized: a bearer token is required")
    assert reviews.reviewed == []


def test_a_burst_costs_one_review_and_the_cache_holds_no_token() -> None:
    reviews, cache = FakeReviews(), TokenCache[Verdict]()
    auth = InvokeAuth(reviews, cache)
    verdicts = [auth.check("Bearer secret-token-1") for _ in range(50)]
    assert verdicts == [ALLOWED] * 50
    assert reviews.reviewed == ["secret-token-1"]
    assert "secret-token-1" not in repr(vars(cache))


@pytest.mark.parametrize(
    ("failure", "status", "headers"),
    [
        (
            ReviewFailed("HTTP 500: etcd is sad", retryable=True),
            503,
            {"Retry-After": str(RETRY_AFTER_SECONDS)},
        ),
        (ReviewFailed("HTTP 403: cannot create tokenreviews", retryable=False), 500, {}),
    ],
)
def test_an_api_failure_is_never_401_and_never_cached(
    failure: ReviewFailed, status: int, headers: dict[str, str]
) -> None:
    reviews = FakeReviews(failure=failure)
    auth = InvokeAuth(reviews)
    verdict = auth.check("Bearer t")
    assert (verdict.status, verdict.headers) == (status, headers)
    assert str(failure) in verdict.message
    reviews.failure = None
    assert auth.check("Bearer t") == ALLOWED
    assert len(reviews.reviewed) == 2


def test_verdicts_expire_after_the_ttl() -> None:
    clock = Clock()
    cache = TokenCache[Verdict](ttl=5.0, clock=clock)
    cache.put("t", ALLOWED)
    clock.now += 4.9
    assert cache.get("t") == ALLOWED
    clock.now += 0.1
    assert cache.get("t") is None
    assert len(cache) == 0


def test_the_least_recently_used_verdict_goes_first_when_full() -> None:
    cache = TokenCache[Verdict](max_entries=3)
    for token in ("a", "b", "c"):
        cache.put(token, Verdict(200, user=token))
    assert cache.get("a") is not None  # now b is the least recently used
    cache.put("d", Verdict(200, user="d"))
    assert [cache.get(token) is not None for token in "abcd"] == [True, False, True, True]
    for n in range(100):
        cache.put(f"flood-{n}", Verdict(401))
    assert len(cache) == 3
