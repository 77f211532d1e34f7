"""A Tenant's limits held across all its Workflows: task slots shared fairly, tokens budgeted.

The Workflow core decides one run at a time; ``limits.maxConcurrentTasks``
and ``limits.tokenBudget`` are about all the runs of a Tenant at once, so
this shell-side gate tells each reconcile what the Tenant allows it now (a
``TenantShare``), counted from kopf's indexes, never from a tally of its own:

- running tasks: the task Jobs not finished in the Tenant's namespaces (an
  index by namespace), plus the Jobs this operator created that the watch has
  not shown yet, plus the ones a reconcile is creating right now (reserved
  from its decision until its creates return: reconciles run concurrently,
  and two must not both take the last slot);
- tokens: ``status.usage.totalTokens`` of the Tenant's other Workflows (an
  index by namespace); the run's own come from its tasks in the core.

So a restarted operator counts the same as the one before it. What it keeps
in memory only orders the sharing: which Workflows were held back, by what,
since when, at what ``spec.priority``. The free slots go as
``tenants.slots.share`` says (by priority, aged while a run waits, then
fairly); the runs it gives a slot to are woken at once, as are the held-back
runs of a Tenant whose limits change (a raised budget resumes them). A
Tenant's budget counts the Workflows that exist: deleting a Workflow returns
its tokens, as deleting a pod returns its share of a ResourceQuota.

It refuses nothing itself and never calls the API: a namespace without a
Tenant, or a Tenant without limits, gets no share (the core's own rules
apply).
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import kopf
from pydantic import ValidationError

from troupe_operator.api import GROUP, VERSION, TenantLimits
from troupe_operator.controller import observe
from troupe_operator.controller.runs import WorkflowKey
from troupe_operator.tenants import LABEL_TENANT, TenantRef
from troupe_operator.tenants.slots import Claim, share
from troupe_operator.workflow import LABEL_WORKFLOW, Decision, TenantShare

LIMITS_INDEX: Final = "tenant_limits"
"""kopf index: a Tenant's label to its name and limits."""
NAMESPACES_INDEX: Final = "tenant_namespaces"
"""kopf index: a Tenant's label to the namespaces labelled for it."""
ACTIVE_JOBS_INDEX: Final = "active_task_jobs"
"""kopf index: a namespace to the (workflow, Job) of each task Job not finished in it."""
TOKENS_INDEX: Final = "workflow_tokens"
"""kopf index: a namespace to the (workflow, tokens used) of each Workflow in it."""
CONCURRENCY: Final = "TenantConcurrencyLimit"


@dataclass(frozen=True)
class Indexes:
    """The kopf indexes the gate counts from (plain mappings in unit tests)."""

    tenant_of: Mapping[str, Collection[str | None]]
    """A namespace to its ``troupe.dev/tenant`` label (tenancy's index)."""
    limits: Mapping[str, Collection[tuple[str, TenantLimits]]]
    namespaces: Mapping[str, Collection[str]]
    active_jobs: Mapping[str, Collection[tuple[str, str]]]
    tokens: Mapping[str, Collection[tuple[str, int]]]


@dataclass
class _Held:
    by: str
    count: int
    since: float


@dataclass
class TenantGate:
    """What each run's Tenant allows it now, and who to wake when that changes.

    ``created`` gives the Jobs created in a namespace not yet seen on the watch,
    by run (``Runs.created_in``); ``wake`` puts a run on the work queue.
    """

    indexes: Indexes
    created: Callable[[str], Mapping[WorkflowKey, Collection[str]]]
    wake: Callable[[WorkflowKey], None]
    clock: Callable[[], float] = time.monotonic
    _held: dict[WorkflowKey, _Held] = field(default_factory=dict)
    _reserved: dict[WorkflowKey, int] = field(default_factory=dict)
    _limits_seen: dict[str, TenantLimits] = field(default_factory=dict)
    _priorities: dict[WorkflowKey, int] = field(default_factory=dict)

    def share(self, key: WorkflowKey, priority: int = 0) -> TenantShare | None:
        """What the run of ``spec.priority`` ``priority`` may start now (None: its namespace
        has no Tenant with limits)."""
        tenant = self._tenant(key[0])
        if tenant is None:
            return None
        self._priorities[key] = priority
        label, name, limits = tenant
        self._limits_seen[label] = limits
        running = self._running(label)
        free = None
        if limits.max_concurrent_tasks is not None:
            claims = self._claims(label, running)
            held = self._held.get(key)
            now = self.clock()
            since = held.since if held else now
            wants = limits.max_concurrent_tasks
            claims[key] = Claim(running.get(key, 0), wants, since, priority)
            free = share(limits.max_concurrent_tasks, claims, now).get(key, 0)
        elsewhere = 0
        if limits.token_budget is not None:
            elsewhere = sum(
                used
                for namespace in self._namespaces(label)
                for workflow, used in self.indexes.tokens.get(namespace, ())
                if (namespace, workflow) != key
            )
        return TenantShare(
            tenant=name,
            free_slots=free,
            max_concurrent_tasks=limits.max_concurrent_tasks,
            token_budget=limits.token_budget,
            tokens_elsewhere=elsewhere,
        )

    def reserve(self, key: WorkflowKey, starts: int) -> None:
        """Count ``starts`` attempts as running until their creates have returned."""
        if starts:
            self._reserved[key] = self._reserved.get(key, 0) + starts

    def release(self, key: WorkflowKey, starts: int) -> None:
        """The creates returned: their Jobs are in the run's memory (or were not made)."""
        left = self._reserved.get(key, 0) - starts
        if left > 0:
            self._reserved[key] = left
        else:
            self._reserved.pop(key, None)

    def decided(self, key: WorkflowKey, decision: Decision) -> None:
        """Remember whether the run was held back, then wake whoever may use a free slot."""
        held = self._held.get(key)
        if decision.held_by is None:
            self._held.pop(key, None)
        else:
            since = held.since if held and held.by == decision.held_by else self.clock()
            self._held[key] = _Held(decision.held_by, decision.held_back, since)
        self.slots_freed(key[0], besides=key)

    def slots_freed(self, namespace: str, besides: WorkflowKey | None = None) -> None:
        """A task Job ended in ``namespace`` (or a run took fewer slots than it had)."""
        tenant = self._tenant(namespace)
        if tenant is None or tenant[2].max_concurrent_tasks is None:
            return
        label, limit = tenant[0], tenant[2].max_concurrent_tasks
        claims = self._claims(label, self._running(label))
        if not any(claim.wants for claim in claims.values()):
            return
        for key in share(limit, claims, self.clock()):
            if key != besides:
                self.wake(key)

    def tenant_changed(self, name: str) -> None:
        """A Tenant's event: if its limits changed, its held-back runs look again."""
        label = TenantRef(name, "").label
        current = self._limits(label)
        if current is not None and current[1] == self._limits_seen.get(label):
            return
        for key in self._held_in(label):
            self.wake(key)

    def forget(self, key: WorkflowKey) -> None:
        self._held.pop(key, None)
        self._reserved.pop(key, None)
        self._priorities.pop(key, None)

    # -- counting ---------------------------------------------------------------

    def _limits(self, label: str) -> tuple[str, TenantLimits] | None:
        return next(iter(self.indexes.limits.get(label, ())), None)

    def _tenant(self, namespace: str) -> tuple[str, str, TenantLimits] | None:
        label = next(iter(self.indexes.tenant_of.get(namespace, ())), None)
        found = self._limits(label) if label else None
        if label is None or found is None:
            return None
        name, limits = found
        if limits.max_concurrent_tasks is None and limits.token_budget is None:
            return None
        return label, name, limits

    def _namespaces(self, label: str) -> Iterable[str]:
        return self.indexes.namespaces.get(label, ())

    def _running(self, label: str) -> dict[WorkflowKey, int]:
        """Each run's attempts that may be running, in all the Tenant's namespaces."""
        jobs: dict[WorkflowKey, set[str]] = defaultdict(set)
        for namespace in self._namespaces(label):
            for workflow, job in self.indexes.active_jobs.get(namespace, ()):
                jobs[(namespace, workflow)].add(job)
            for key, names in self.created(namespace).items():
                jobs[key].update(names)
        counts = {key: len(names) for key, names in jobs.items()}
        for key, reserved in self._reserved.items():
            if key in counts or key[0] in self._namespaces(label):
                counts[key] = counts.get(key, 0) + reserved
        return counts

    def _held_in(self, label: str) -> list[WorkflowKey]:
        namespaces = set(self._namespaces(label))
        return [key for key in self._held if key[0] in namespaces]

    def _claims(self, label: str, running: Mapping[WorkflowKey, int]) -> dict[WorkflowKey, Claim]:
        """Every run of the Tenant that runs tasks or waits for a slot."""
        claims = {key: Claim(count, 0, math.inf) for key, count in running.items()}
        for key in self._held_in(label):
            held = self._held[key]
            if held.by == CONCURRENCY:
                priority = self._priorities.get(key, 0)
                claims[key] = Claim(running.get(key, 0), held.count, held.since, priority)
        return claims


def _limits_entry(name: str, spec: Mapping[str, Any]) -> dict[str, tuple[str, TenantLimits]]:
    """A Tenant whose limits do not parse has none here (its own status says why)."""
    try:
        limits = TenantLimits.model_validate(spec.get("limits") or {})
    except ValidationError:
        return {}
    return {TenantRef(name, "").label: (name, limits)}


def _tokens(status: Mapping[str, Any]) -> int:
    usage = status.get("usage") or {}
    used = usage.get("totalTokens") if isinstance(usage, Mapping) else None
    return used if isinstance(used, int) and not isinstance(used, bool) and used > 0 else 0


def register_indexes(registry: kopf.OperatorRegistry) -> None:
    @kopf.index(GROUP, VERSION, "tenants", id=LIMITS_INDEX, registry=registry)
    async def index_tenant_limits(name: str, spec: kopf.Spec, **_: Any) -> Any:
        return _limits_entry(name, spec)

    @kopf.index("", "v1", "namespaces", id=NAMESPACES_INDEX, registry=registry)
    async def index_tenant_namespaces(name: str, labels: kopf.Labels, **_: Any) -> Any:
        label = labels.get(LABEL_TENANT)
        return {label: name} if label else {}

    @observe.task_job_index(registry, ACTIVE_JOBS_INDEX)
    async def index_active_job(
        body: kopf.Body, namespace: str | None, labels: kopf.Labels, **_: Any
    ) -> Any:
        record = observe.job_record(body)
        if record is None or record.finished:
            return {}
        return {namespace: (labels[LABEL_WORKFLOW], record.name)}

    @kopf.index(GROUP, VERSION, "workflows", id=TOKENS_INDEX, registry=registry)
    async def index_workflow_tokens(
        namespace: str | None, name: str, status: kopf.Status, **_: Any
    ) -> Any:
        used = _tokens(status)
        return {namespace: (name, used)} if used else {}
