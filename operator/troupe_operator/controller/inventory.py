"""Gauges of what exists, computed when Prometheus scrapes: Workflows, budgets, waiting tasks.

A gauge set as things happen would miss what happened before this process
started (a finished Workflow is never reconciled again) and would keep
series of what is gone. These are computed from kopf's indexes instead,
which kopf fills from a full listing at start and keeps by watching, so a
restarted operator reports the same numbers as the one before it:

- ``troupe_workflows{namespace, phase}``: Workflows by ``status.phase``,
  finished ones included, until they are deleted; one the operator has not
  written a phase for yet counts as Pending. Every phase of a namespace
  with Workflows is reported, 0 included, so ratios need no ``or vector(0)``;
- ``troupe_tenant_budget_tokens{tenant}`` and
  ``troupe_tenant_budget_remaining_tokens{tenant}``: a Tenant's
  ``limits.tokenBudget`` and the ``status.budgetRemaining`` its controller
  last wrote, for Tenants with a budget;
- ``troupe_tasks_waiting{namespace, reason}``: ready tasks the latest
  decision held back, by reason, from the run memory of the Workflow
  controller (live runs only; a restarted operator knows again at each run's
  first reconcile).

Only the leader watches, so only the leader reports these; a standby
exports the metric families without samples. The scrape runs in the
metrics endpoint's thread while kopf changes the indexes on its event loop,
so every read copies in one step (``list`` of a dict's keys or values) and
a scrape that still meets a change is read again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import kopf
from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from troupe_operator.api import GROUP, VERSION, WorkflowPhase
from troupe_operator.controller.run_metrics import reason_label

WORKFLOW_PHASES_INDEX: Final = "workflow_phases"
"""kopf index: a namespace to the phase of each Workflow in it."""
TENANT_BUDGETS_INDEX: Final = "tenant_budgets"
"""kopf index: a Tenant's name to its token budget and the budget remaining in its status."""
PHASES: Final = tuple(phase.value for phase in WorkflowPhase)
READS: Final = 3
"""Times a scrape reads an index that changes under it before it gives up on that scrape."""

V = TypeVar("V")
Budget = tuple[int, int | None]


@dataclass(frozen=True)
class Sources:
    """What the gauges are computed from: kopf's indexes and the run memory."""

    phases: Mapping[str, Collection[str]]
    budgets: Mapping[str, Collection[Budget]]
    waiting: Callable[[], list[tuple[str, list[str]]]]


def workflow_phase(status: Mapping[str, Any]) -> str:
    phase = status.get("phase")
    return phase if isinstance(phase, str) and phase in PHASES else WorkflowPhase.PENDING.value


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def tenant_budget(spec: Mapping[str, Any], status: Mapping[str, Any]) -> Budget | None:
    """A Tenant's token budget and what its status says remains; None without a budget."""
    limits = spec.get("limits")
    budget = _count(limits.get("tokenBudget")) if isinstance(limits, Mapping) else None
    if budget is None:
        return None
    return budget, _count(status.get("budgetRemaining"))


def register_indexes(registry: kopf.OperatorRegistry) -> None:
    @kopf.index(GROUP, VERSION, "workflows", id=WORKFLOW_PHASES_INDEX, registry=registry)
    async def index_workflow_phase(namespace: str | None, status: kopf.Status, **_: Any) -> Any:
        return {namespace: workflow_phase(status)}

    @kopf.index(GROUP, VERSION, "tenants", id=TENANT_BUDGETS_INDEX, registry=registry)
    async def index_tenant_budget(name: str, spec: kopf.Spec, status: kopf.Status, **_: Any) -> Any:
        budget = tenant_budget(spec, status)
        return {} if budget is None else {name: budget}


def snapshot(index: Mapping[str, Collection[V]]) -> list[tuple[str, list[V]]]:
    """Each key of ``index`` with its values, copied in steps no other thread can split."""
    for _ in range(READS - 1):
        try:
            return _copy(index)
        except RuntimeError:  # changed while being read
            continue
    return _copy(index)


def _copy(index: Mapping[str, Collection[V]]) -> list[tuple[str, list[V]]]:
    copied = []
    for key in list(index):
        values = index.get(key)
        if values:
            copied.append((key, list(values)))
    return copied


class Inventory(Collector):
    """The scrape-time gauges; reports samples only while :meth:`watch` has given sources."""

    def __init__(self) -> None:
        self.sources: Sources | None = None

    def watch(self, sources: Sources) -> None:
        self.sources = sources

    def unwatch(self) -> None:
        self.sources = None

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return self._families()

    def collect(self) -> Iterable[GaugeMetricFamily]:
        families = self._families()
        sources = self.sources
        if sources is None:
            return families
        workflows, budget, remaining, waiting = families
        for namespace, phases in sorted(snapshot(sources.phases)):
            counted = Counter(phases)
            for phase in PHASES:
                workflows.add_metric([namespace, phase], counted[phase])
        for tenant, budgets in sorted(snapshot(sources.budgets)):
            total, left = budgets[0]
            budget.add_metric([tenant], total)
            if left is not None:
                remaining.add_metric([tenant], left)
        held = Counter(
            (namespace, reason_label(reason))
            for namespace, reasons in sources.waiting()
            for reason in reasons
        )
        for (namespace, reason), count in sorted(held.items()):
            waiting.add_metric([namespace, reason], count)
        return families

    @staticmethod
    def _families() -> list[GaugeMetricFamily]:
        return [
            GaugeMetricFamily(
                "troupe_workflows",
                "Workflows by namespace and status.phase, finished ones included (not yet "
                "phased: Pending). Reported by the leader.",
                labels=["namespace", "phase"],
            ),
            GaugeMetricFamily(
                "troupe_tenant_budget_tokens",
                "A Tenant's limits.tokenBudget, for Tenants with one. Reported by the leader.",
                labels=["tenant"],
            ),
            GaugeMetricFamily(
                "troupe_tenant_budget_remaining_tokens",
                "Tokens a Tenant may still use: its status.budgetRemaining (limits.tokenBudget "
                "minus the tokens of its namespaces' Workflows). Reported by the leader.",
                labels=["tenant"],
            ),
            GaugeMetricFamily(
                "troupe_tasks_waiting",
                "Ready tasks the latest decision held back, by namespace and reason "
                "(parallelism, tenant_limit, budget, agent_not_found, no_matching_agent, "
                "not_tenanted).",
                labels=["namespace", "reason"],
            ),
        ]


INVENTORY: Final = Inventory()
REGISTRY.register(INVENTORY)
