"""The retry policy, Retry-After parsing and the task deadline, without any network."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from troupe_agent.retry import MAX_RETRY_AFTER_SECONDS, Deadline, RetryPolicy, parse_retry_after

NOW = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("retry_number", "expected_ceiling"), [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (10, 20.0)]
)
def test_backoff_is_full_jitter_below_an_exponential_capped_ceiling(
    retry_number: int, expected_ceiling: float
) -> None:
    top = RetryPolicy(max_retries=3, jitter=lambda: 0.999999)
    bottom = RetryPolicy(max_retries=3, jitter=lambda: 0.0)
    assert top.backoff(retry_number) == pytest.approx(expected_ceiling, rel=1e-5)
    assert bottom.backoff(retry_number) == 0.0


def test_backoff_with_real_randomness_stays_within_bounds() -> None:
    policy = RetryPolicy(max_retries=3)
    delays = [policy.backoff(2) for _ in range(200)]
    assert all(0 <= delay <= 2.0 for delay in delays)
    assert len(set(delays)) > 100  # jittered, not a fixed schedule


def test_retry_after_wins_over_backoff_and_is_capped() -> None:
    policy = RetryPolicy(max_retries=3, jitter=lambda: 0.5)
    assert policy.delay(0, retry_after=7.0) == 7.0
    assert policy.delay(0, retry_after=None) == 0.25
    assert policy.delay(0, retry_after=10_000.0) == MAX_RETRY_AFTER_SECONDS


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "3"}, 3.0),
        ({"retry-after": " 1.5 "}, 1.5),
        ({"Retry-After": "Wed, 01 Jan 2025 12:00:10 GMT"}, 10.0),
        ({"Retry-After": "Wed, 01 Jan 2025 11:59:00 GMT"}, 0.0),  # in the past: go now
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"Retry-After": "soon"}, None),
        ({"Retry-After": "-4"}, None),
        ({"Retry-After": "nan"}, None),
        ({}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers, now=lambda: NOW) == expected


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_deadline_cuts_call_timeouts_and_refuses_waits_past_it() -> None:
    clock = FakeClock()
    deadline = Deadline(10, clock=clock)
    assert deadline.call_timeout(60) == 10
    assert deadline.call_timeout(3) == 3
    clock.now += 8
    assert deadline.call_timeout(60) == pytest.approx(2)
    assert deadline.allows_wait(1.5)
    assert not deadline.allows_wait(2.5)
    assert not deadline.expired()
    clock.now += 5
    assert deadline.expired()
    assert deadline.remaining() == 0


def test_no_deadline_never_expires() -> None:
    deadline = Deadline(None)
    assert deadline.remaining() is None
    assert deadline.call_timeout(42) == 42
    assert deadline.allows_wait(1e9)
    assert not deadline.expired()
