"""The task pod's Kubernetes API calls: what is retried, how long it waits, when it gives up."""

from __future__ import annotations

import json
from typing import Any

import pytest
import urllib3
from kubernetes.client.exceptions import ApiException

from troupe_agent.kube_api import (
    MIN_REQUEST_TIMEOUT_SECONDS,
    OWN_RETRY_SECONDS,
    REQUEST_TIMEOUT_SECONDS,
    KubeApiError,
    KubeCaller,
)
from troupe_agent.retry import Deadline, RetryPolicy


def api_error(status: int, message: str = "no", **headers: str) -> ApiException:
    error = ApiException(status=status, reason="Reason")
    error.body = json.dumps({"kind": "Status", "message": message, "code": status})
    error.headers = headers
    return error


TIMEOUT = urllib3.exceptions.ReadTimeoutError(None, "/api", "Read timed out.")  # type: ignore[arg-type]
REFUSED = urllib3.exceptions.NewConnectionError(None, "Connection refused")  # type: ignore[arg-type]


class Scripted:
    """A request that fails with the scripted errors, then answers "ok"; a clock its sleeps move."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.timeouts: list[float] = []
        self.sleeps: list[float] = []

    def now(self) -> float:
        return sum(self.sleeps)

    def __call__(self, timeout: float) -> str:
        self.timeouts.append(timeout)
        if self.errors:
            raise self.errors.pop(0)
        return "ok"

    def caller(self, deadline_seconds: float | None) -> KubeCaller:
        policy = RetryPolicy(max_retries=10, base_delay=0.25, max_delay=5.0, jitter=lambda: 1.0)
        return KubeCaller(Deadline(deadline_seconds, self.now), self.sleeps.append, policy)


@pytest.mark.parametrize(
    ("errors", "sleeps"),
    [
        ((api_error(503), api_error(500), api_error(502)), [0.25, 0.5, 1.0]),
        ((api_error(429, **{"Retry-After": "2"}),), [2.0]),
        ((TIMEOUT, REFUSED, ConnectionResetError()), [0.25, 0.5, 1.0]),
    ],
)
def test_transient_failures_are_retried_with_backoff(
    errors: tuple[Exception, ...], sleeps: list[float]
) -> None:
    request = Scripted(*errors)
    assert request.caller(None).call(request, "reading") == "ok"
    assert request.sleeps == sleeps
    assert all(t == REQUEST_TIMEOUT_SECONDS for t in request.timeouts)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422])
def test_answers_are_raised_at_once_with_the_api_message(status: int) -> None:
    request = Scripted(api_error(status, 'configmaps "x" is forbidden'))
    with pytest.raises(KubeApiError) as failed:
        request.caller(None).call(request, "reading")
    assert failed.value.status == status and not failed.value.retryable
    assert str(failed.value) == f'HTTP {status} Reason: configmaps "x" is forbidden'
    assert request.sleeps == []


@pytest.mark.parametrize(
    ("deadline", "budget"), [(3.0, 3.0), (None, OWN_RETRY_SECONDS), (1e6, OWN_RETRY_SECONDS)]
)
def test_retries_stop_at_the_deadline_or_the_own_bound(
    deadline: float | None, budget: float
) -> None:
    request = Scripted(*[api_error(503)] * 100)
    with pytest.raises(KubeApiError) as failed:
        request.caller(deadline).call(request, "reading")
    assert failed.value.retryable and failed.value.status == 503
    assert "gave up after" in str(failed.value)
    assert sum(request.sleeps) < budget
    assert all(MIN_REQUEST_TIMEOUT_SECONDS <= t <= budget for t in request.timeouts)


def test_unknown_errors_are_not_swallowed() -> None:
    request: Any = Scripted(TypeError("a bug"))
    with pytest.raises(TypeError):
        request.caller(None).call(request, "reading")
