"""An Agent's pods elect a supervisor on the Lease ``<agent>-supervisor``; it alone writes status.

Every serve-mode pod of an Agent with replicas campaigns with the shared
elector (:class:`troupe_operator.election.LeaderElector`, over
:class:`~troupe_agent.lease_api.ApiLeaseStore`) under its pod name, and
announces on the Lease, while it holds it, the address it serves on
(``troupe.dev/holder-address``), so the other pods can hand team invocations
to it (``troupe_agent.team_routing``). Each pod posts an Event on the Lease
for every transition it sees (``StartedLeading``, ``StoppedLeading``,
``LeaderChanged``) and exports ``leader_election_master_status``.

The holder does the Agent's singleton work, as an ingress controller's leader
writes Ingress status: every ``status_period`` it writes ``status.supervisor``,
``status.leaseTransitions``, the ``ModelReady`` condition
(``troupe_agent.model_probe``) and ``status.calls`` (its own model calls,
``reportedBy`` naming it), with a merge patch that carries the
``resourceVersion`` it read, so a concurrent write by the operator (which owns
the other conditions and keeps this one) is a 409 and nothing is lost; and it
deletes its Agent's expired Conversations. Nothing is written when nothing
changed but the time. A loser of the Lease stops writing: the guarded work is
cancelled, and a write already in a worker thread checks, just before it is
sent, that this pod still leads. A failed write is logged and tried again at
the next period; it never costs the pod its leadership or its serving.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, Final

from kubernetes.client import ApiClient, CoreV1Api, CustomObjectsApi
from prometheus_client import CollectorRegistry

from troupe_agent.access_reviews import pod_namespace
from troupe_agent.call_window import CallWindow
from troupe_agent.conversations import ConversationStore
from troupe_agent.kube_api import KubeApiError, KubeCaller
from troupe_agent.lease_api import ApiLeaseStore
from troupe_agent.model_probe import MODEL_READY, ModelCheck, probe_model
from troupe_agent.retry import Deadline, RetryPolicy
from troupe_operator.api import GROUP, VERSION, AgentSpec
from troupe_operator.api.serve_env import LEASE_ENV, POD_IP_ENV, POD_NAME_ENV
from troupe_operator.election import LeaderElector, LeadershipLost, Transition
from troupe_operator.election.elector import ElectionConfig
from troupe_operator.election.settings import election_config_from_env

log = logging.getLogger(__name__)

STATUS_PERIOD_ENV: Final = "TROUPE_SUPERVISOR_STATUS_SECONDS"
DEFAULT_STATUS_PERIOD: Final = 15.0
ADDRESS_ANNOTATION: Final = "troupe.dev/holder-address"
"""The holder's serving address (``http://<pod IP>:<port>``), on the Lease while it holds it."""

WRITE_SECONDS: Final = 5.0
"""Time for one status write, retries of 429/5xx included."""
WRITE_POLICY: Final = RetryPolicy(max_retries=2, base_delay=0.1, max_delay=1.0)


@dataclass(frozen=True)
class SupervisionSettings:
    agent: str
    namespace: str
    lease: str
    identity: str
    address: str | None
    election: ElectionConfig
    status_period: float

    @classmethod
    def from_env(
        cls, agent: str, port: int, environ: Mapping[str, str] = os.environ
    ) -> SupervisionSettings | None:
        """The settings of a pod the operator runs (None: no Lease to elect, e.g. run locally).

        Raises ValueError, naming the variable, for a setting that makes no sense."""
        lease = environ.get(LEASE_ENV, "").strip()
        if not lease:
            return None
        namespace = pod_namespace()
        if namespace is None:
            raise ValueError(f"{LEASE_ENV} is set but the pod's namespace is unknown")
        try:
            period = float(environ.get(STATUS_PERIOD_ENV, DEFAULT_STATUS_PERIOD))
        except ValueError:
            period = -1.0
        if not 0 < period < float("inf"):
            raise ValueError(f"{STATUS_PERIOD_ENV} must be a positive number of seconds")
        pod_ip = environ.get(POD_IP_ENV, "").strip()
        return cls(
            agent=agent,
            namespace=namespace,
            lease=lease,
            identity=environ.get(POD_NAME_ENV) or f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}",
            address=f"http://{pod_ip}:{port}" if pod_ip else None,
            election=election_config_from_env(environ),
            status_period=period,
        )


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def model_condition(check: ModelCheck, previous: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``ModelReady`` condition for ``check``; its transition time moves only with status."""
    since = _now()
    if previous is not None and previous.get("status") == check.status:
        since = previous.get("lastTransitionTime") or since
    return {
        "type": MODEL_READY,
        "status": check.status,
        "reason": check.reason,
        "message": check.message,
        "lastTransitionTime": since,
    }


def _holds(status: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    """Whether ``status`` already says what is ``wanted`` (the time of the calls aside)."""
    calls = {k: v for k, v in (status.get("calls") or {}).items() if k != "updatedAt"}
    return calls == wanted["calls"] and all(
        status.get(key) == value for key, value in wanted.items() if key != "calls"
    )


class Supervision:
    """This pod's candidacy for its Agent's Lease, and the holder's status work."""

    def __init__(
        self,
        settings: SupervisionSettings,
        api_client: ApiClient,
        model: tuple[AgentSpec, str | None],
        calls: CallWindow,
        registry: CollectorRegistry,
        conversations: ConversationStore | None = None,
    ) -> None:
        self.settings = settings
        self._conversations = conversations
        self._spec, self._api_key = model
        self._calls = calls
        self._objects = CustomObjectsApi(api_client)
        self._core = CoreV1Api(api_client)
        store = ApiLeaseStore(
            api_client, settings.namespace, settings.lease, settings.election.call_timeout
        )
        self.elector = LeaderElector(
            store,
            settings.identity,
            settings.election,
            observer=self._on_transition,
            registry=registry,
            announce={ADDRESS_ANNOTATION: settings.address} if settings.address else None,
        )
        self._posting: set[asyncio.Task[None]] = set()

    # -- what the pod tells -----------------------------------------------------

    def view(self) -> dict[str, Any]:
        """``GET /v1/supervisor``: who holds the Lease, as this pod last saw it."""
        return {
            "agent": self.settings.agent,
            "lease": self.settings.lease,
            "holder": self.elector.holder or None,
            "leaseTransitions": self.elector.lease_transitions,
            "identity": self.settings.identity,
            "leading": self.elector.is_leader,
        }

    def holder_address(self) -> str | None:
        """Where the holder serves, as it announced on the Lease; None when unknown."""
        return self.elector.holder_annotations.get(ADDRESS_ANNOTATION) or None

    # -- the campaign -----------------------------------------------------------

    async def run(self) -> None:
        """Campaign for as long as the pod serves; lead, lose, campaign again."""
        while True:
            try:
                await self.elector.run(self._lead)
            except LeadershipLost as lost:
                log.warning("no longer the supervisor of agent %s: %s", self.settings.agent, lost)
            except Exception:  # a bug: said with its traceback; the campaign goes on
                log.exception("the supervisor election of agent %s failed", self.settings.agent)
                await asyncio.sleep(self.settings.election.retry_period)

    async def _lead(self) -> None:
        """The holder's work, every status period; a failure is logged and tried next time."""
        while True:
            await self._attempt(self._publish, "write the Agent's status")
            if self._conversations is not None:
                await self._attempt(self._conversations.sweep, "delete expired Conversations")
            await asyncio.sleep(self.settings.status_period)

    async def _attempt(self, work: Callable[[], object], what: str) -> None:
        try:
            await asyncio.to_thread(work)
        except KubeApiError as error:
            log.warning("agent %s: cannot %s: %s", self.settings.agent, what, error)
        except Exception:  # a bug: said with its traceback, and the pod keeps serving
            log.exception("agent %s: cannot %s", self.settings.agent, what)

    def _publish(self) -> None:
        """Write what the supervisor knows into the Agent's status, if any of it changed."""
        caller = KubeCaller(Deadline(WRITE_SECONDS), policy=WRITE_POLICY)
        check = probe_model(self._spec, self._api_key)
        for _ in range(2):  # a 409 means someone wrote in between: read again, once
            agent = caller.call(self._read_agent, f"reading agent {self.settings.agent}")
            status = agent.get("status") or {}
            wanted = self._status(status, check)
            if _holds(status, wanted) or not self.elector.is_leader:
                return
            patch = {
                "metadata": {"resourceVersion": agent["metadata"]["resourceVersion"]},
                "status": {**wanted, "calls": {**wanted["calls"], "updatedAt": _now()}},
            }
            try:
                caller.call(partial(self._patch_agent, patch), "writing the Agent's status")
                return
            except KubeApiError as error:
                if error.status != 409:
                    raise

    def _status(self, status: Mapping[str, Any], check: ModelCheck) -> dict[str, Any]:
        conditions = [c for c in status.get("conditions") or () if isinstance(c, dict)]
        previous = next((c for c in conditions if c.get("type") == MODEL_READY), None)
        others = [c for c in conditions if c.get("type") != MODEL_READY]
        return {
            "supervisor": self.settings.identity,
            "leaseTransitions": self.elector.lease_transitions,
            "conditions": [*others, model_condition(check, previous)],
            "calls": {**self._calls.snapshot(), "reportedBy": self.settings.identity},
        }

    def _read_agent(self, timeout: float) -> dict[str, Any]:
        agent = self._objects.get_namespaced_custom_object_status(
            GROUP,
            VERSION,
            self.settings.namespace,
            "agents",
            self.settings.agent,
            _request_timeout=timeout,
        )
        assert isinstance(agent, dict)
        return agent

    def _patch_agent(self, patch: dict[str, Any], timeout: float) -> object:
        return self._objects.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            self.settings.namespace,
            "agents",
            self.settings.agent,
            patch,
            _request_timeout=timeout,
            _content_type="application/merge-patch+json",
        )

    # -- events -------------------------------------------------------------------

    def _on_transition(self, transition: Transition) -> None:
        log.info("supervisor election of agent %s: %s", self.settings.agent, transition.message)
        task = asyncio.create_task(asyncio.to_thread(self._post_event, transition))
        self._posting.add(task)
        task.add_done_callback(self._posting.discard)

    def _post_event(self, transition: Transition) -> None:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        event = {
            "metadata": {
                "name": f"{self.settings.lease}.{uuid.uuid4().hex[:16]}",
                "namespace": self.settings.namespace,
            },
            "involvedObject": {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "namespace": self.settings.namespace,
                "name": self.settings.lease,
            },
            "reason": transition.change.value,
            "message": transition.message,
            "type": "Warning" if transition.lost else "Normal",
            "source": {"component": "troupe-agent"},
            "reportingComponent": "troupe.dev/agent",
            "reportingInstance": self.settings.identity,
            "action": "Elect",
            "eventTime": now,
            "firstTimestamp": now[:19] + "Z",
            "lastTimestamp": now[:19] + "Z",
            "count": 1,
        }
        caller = KubeCaller(Deadline(WRITE_SECONDS), policy=WRITE_POLICY)
        try:
            caller.call(
                lambda timeout: self._core.create_namespaced_event(
                    self.settings.namespace,
                    event,  # type: ignore[arg-type]  # a dict is sent as it is
                    _request_timeout=timeout,
                ),
                "posting an election Event",
            )
        except KubeApiError as error:
            log.warning("cannot post the Event %s: %s", transition.change.value, error)
