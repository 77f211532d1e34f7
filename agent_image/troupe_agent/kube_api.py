"""Calls an agent pod makes to the Kubernetes API: bounded in time, retried while the API is busy.

A task reads its upstream outputs and writes its own through the API, after
(or before) paying for model calls, so a passing 5xx must not cost it the
attempt. Every call carries a request timeout; 429 (honouring
``Retry-After``), 5xx, timeouts and connection errors are retried with capped
exponential backoff and full jitter until the task deadline, or
``OWN_RETRY_SECONDS`` when the task has none. Everything else (401, 403, 404,
409, 422) is an answer, not an outage: it is raised at once as a
:class:`KubeApiError` for the caller to word. This module refuses to retry
those, and to decide what they mean for the task.

Serve mode reviews its callers' tokens through the same caller, with a budget
of seconds rather than a task's (``troupe_agent.invoke_auth``).

Imported only by pods that talk to the cluster: local runs never load the
``kubernetes`` client.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, TypeVar

import urllib3
from kubernetes import config
from kubernetes.client import ApiClient, Configuration
from kubernetes.client.exceptions import ApiException

from troupe_agent.retry import Deadline, RetryPolicy, parse_retry_after

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_SECONDS: Final = 15.0
"""Limit on one API request, cut to what is left of the retry budget."""

MIN_REQUEST_TIMEOUT_SECONDS: Final = 1.0
"""Every call is tried at least once with this long, even at the very end of the deadline."""

OWN_RETRY_SECONDS: Final = 60.0
"""How long one call is retried when the task has no deadline (or a later one)."""

TASK_USER_AGENT: Final = "troupe-agent/task"
SERVE_USER_AGENT: Final = "troupe-agent/serve"
"""How agent pods name themselves to the API (audit logs, fault injection in tests)."""

RETRYABLE_STATUSES: Final = frozenset({429}) | frozenset(range(500, 600))

DEFAULT_POLICY: Final = RetryPolicy(max_retries=10, base_delay=0.25, max_delay=5.0)

Result = TypeVar("Result")


class KubeApiError(Exception):
    """An API call that failed for good: refused, or still unavailable when time ran out."""

    def __init__(self, status: int | None, detail: str, *, retryable: bool) -> None:
        super().__init__(detail)
        self.status = status
        self.retryable = retryable


def connect(user_agent: str) -> ApiClient:
    """A client with in-cluster credentials in a pod, else ``KUBECONFIG`` or ``~/.kube``."""
    configuration = Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except config.ConfigException:
        try:
            config.load_kube_config(  # type: ignore[no-untyped-call]
                # read now: the library reads KUBECONFIG once, when it is imported
                config_file=os.environ.get("KUBECONFIG"),
                client_configuration=configuration,
            )
        except (config.ConfigException, OSError) as exc:
            why = f"no Kubernetes API configured (not in a pod, no kubeconfig): {exc}"
            raise KubeApiError(None, why, retryable=False) from exc
    configuration.retries = False  # ours, below: urllib3's would retry at once, past deadlines
    api_client = ApiClient(configuration)
    api_client.user_agent = user_agent
    return api_client


@dataclass(frozen=True)
class _Outage:
    """A failed call another try may cure, and how long the server asked us to wait."""

    status: int | None
    detail: str
    retry_after: float | None


@dataclass(frozen=True)
class KubeCaller:
    """Makes API calls within a deadline, retrying the transient failures."""

    deadline: Deadline
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)
    policy: RetryPolicy = DEFAULT_POLICY

    def call(self, request: Callable[[float], Result], what: str) -> Result:
        """``request(timeout)``'s result; raises :class:`KubeApiError` when it fails for good."""
        budget = self.deadline.capped(OWN_RETRY_SECONDS)
        retries = 0
        while True:
            timeout = max(MIN_REQUEST_TIMEOUT_SECONDS, budget.call_timeout(REQUEST_TIMEOUT_SECONDS))
            try:
                return request(timeout)
            except ApiException as exc:
                outage = _outage_of_status(exc)
            except (urllib3.exceptions.HTTPError, OSError) as exc:  # timeouts, refused, reset
                outage = _Outage(None, f"cannot reach the Kubernetes API: {exc}", None)
            delay = self.policy.delay(retries, outage.retry_after)
            if retries >= self.policy.max_retries or not budget.allows_wait(delay):
                tries = f"{retries + 1} attempts" if retries else "1 attempt, no time to retry"
                raise KubeApiError(
                    outage.status, f"{outage.detail} (gave up after {tries})", retryable=True
                )
            log.warning(
                "%s failed (%s), retry %d in %.2fs", what, outage.detail, retries + 1, delay
            )
            self.sleep(delay)
            retries += 1


def _outage_of_status(exc: ApiException) -> _Outage:
    """The outage an HTTP error stands for; raises KubeApiError when it is an answer instead."""
    detail = f"HTTP {exc.status} {exc.reason}: {_api_message(exc)}"
    if exc.status not in RETRYABLE_STATUSES:
        raise KubeApiError(exc.status, detail, retryable=False) from exc
    return _Outage(exc.status, detail, parse_retry_after(dict(exc.headers or {})))


def _api_message(exc: ApiException) -> str:
    """The ``message`` of the API's ``Status`` body, else the body itself."""
    try:
        status = json.loads(exc.body or "")
    except ValueError:
        return str(exc.body or "").strip()
    return str(status.get("message", "")) if isinstance(status, dict) else str(status)
