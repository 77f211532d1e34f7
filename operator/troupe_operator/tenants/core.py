"""What a Tenant's namespaces and their children should be, from what was observed of them.

``reconcile`` is pure: in go the Tenant (its spec, or why it does not
parse), its status and finalizers, whether it is being deleted, each
namespace of its spec and each namespace labelled for it (the Namespace, the
children found by name, its Workflows, Agents and task Jobs), and the writes
the API server refused last time; out come the writes (each a whole object:
created when absent, else replaced with the observed ``resourceVersion``, so
a concurrent change fails with 409 instead of being lost), the deletes, the
finalizers to set, the status and the Events. A steady Tenant causes no
write: an object is written only when it does not already hold what is
wanted (``compare.covers``).

Whose namespace is it: a namespace is the Tenant's when labelled
``troupe.dev/tenant`` for it. One that does not exist is created with that
label, so of two Tenants creating it the first wins and the second finds it
labelled for the first. One that exists unlabelled is adopted (labelled)
when it holds no Workflow and no Agent, or when it still holds children the
Tenant owns (its label was removed by hand). The core refuses, with a reason on
the namespace's entry in the status, the ``NamespacesReady`` condition and
a Warning Event, and without writing anything in it:

- ``NamespaceOwnedByAnotherTenant``: labelled for another Tenant, named;
- ``NamespaceNotEmpty``: unlabelled and holding Troupe objects, which would
  fall under policies their owners never agreed to;
- ``NamespaceReserved``: ``default`` or ``kube-*``, which belong to the
  cluster;
- ``ChildNotOwned``: an object of a child's name that the Tenant does not
  own (it is never overwritten);
- ``<Kind>Refused``: a write the API server refused for good, in its words.

A namespace being deleted is ``Terminating`` and is created again once gone.

A namespace labelled for the Tenant but no longer in its spec is released
as ``Retain`` releases it: never deleted because of an edit.

Deletion (the Tenant has a ``deletionTimestamp``) is guarded by the
finalizer ``troupe.dev/tenant-cleanup``, which the first reconcile adds.
``Retain`` deletes the children the Tenant owns and removes its label and
annotation from each namespace (the Pod Security labels stay: releasing a
namespace does not loosen it); ``Delete`` deletes each namespace labelled
for it. The finalizer is removed once nothing is left to do (a namespace
still terminating counts as done).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from troupe_operator.api import (
    API_VERSION,
    Condition,
    DeletionPolicy,
    NamespaceState,
    TenantNamespace,
    TenantPhase,
    TenantSpec,
    TenantStatus,
)
from troupe_operator.desired import covers, replacement, without
from troupe_operator.tenants import usage
from troupe_operator.tenants.children import (
    FINALIZER,
    LABEL_TENANT,
    TENANT_ANNOTATION,
    Body,
    Child,
    TenantRef,
    TenantSettings,
    claimed_by,
    desired,
    namespace,
    namespace_metadata,
)
from troupe_operator.workflow import Event, EventType, InvalidSpec
from troupe_operator.workflow.conditions import find_condition, next_condition

READY: Final = "Ready"
NAMESPACES_READY: Final = "NamespacesReady"
WITHIN_BUDGET: Final = "WithinBudget"
TOKEN_BUDGET_EXCEEDED: Final = "TokenBudgetExceeded"
RESERVED: Final = frozenset({"default"})
RESERVED_PREFIX: Final = "kube-"

Target = tuple[str, Child | None]
"""A namespace and one of its children; ``None``: the Namespace itself."""


@dataclass(frozen=True)
class ObservedNamespace:
    """One namespace as found: None when it does not exist."""

    body: Body | None
    children: Mapping[Child, Body] = field(default_factory=dict)
    """The children found by name (only looked for when the namespace may be the Tenant's)."""
    workflows: Sequence[Body] = ()
    agents: int = 0
    """Agents in it (counted only when it is unlabelled: adopting needs it empty)."""
    jobs: Sequence[Body] = ()
    """Task Jobs (labelled ``troupe.dev/workflow``) in it."""


@dataclass(frozen=True)
class Observation:
    tenant: TenantRef
    generation: int
    spec: TenantSpec | InvalidSpec
    status: TenantStatus
    finalizers: tuple[str, ...]
    deleting: bool
    namespaces: Mapping[str, ObservedNamespace]
    """Every namespace of the spec and every namespace labelled for the Tenant."""
    settings: TenantSettings
    now: datetime
    refusals: Mapping[Target, str] = field(default_factory=dict)
    """Writes the API server refused for good (403, 422), with its message."""


@dataclass(frozen=True)
class Write:
    """Create ``body`` (``create``), or replace the observed object with it."""

    namespace: str
    child: Child | None
    body: Body
    create: bool


@dataclass(frozen=True)
class Decision:
    writes: Sequence[Write]
    deletes: Sequence[Target]
    """Deleted before the writes are made."""
    finalizers: tuple[str, ...] | None
    """The Tenant's finalizers to set (None: leave them); without ours, the Tenant goes."""
    status: TenantStatus
    events: Sequence[Event]
    resync: bool
    """Look again after the resync period: something may change that no watched event
    reports (a refused namespace emptied, a namespace finishing its termination)."""
    again: bool = False
    """Look again at once: the cleanup made progress and is not finished."""


@dataclass(frozen=True)
class _Entry:
    state: NamespaceState
    reason: str
    message: str
    writes: Sequence[Write] = ()
    deletes: Sequence[Target] = ()
    events: Sequence[Event] = ()


def _labelled_for(body: Body | None, tenant: TenantRef) -> bool:
    labels = ((body or {}).get("metadata") or {}).get("labels") or {}
    return bool(labels.get(LABEL_TENANT) == tenant.label)


def _terminating(body: Body) -> bool:
    return bool(body["metadata"].get("deletionTimestamp"))


def _ours(tenant: TenantRef, child: Body) -> bool:
    """Controlled by this Tenant, or by an earlier Tenant of its name (adopted, re-owned)."""
    return any(
        ref.get("controller")
        and ref.get("apiVersion") == API_VERSION
        and ref.get("kind") == "Tenant"
        and (ref.get("uid") == tenant.uid or ref.get("name") == tenant.name)
        for ref in child["metadata"].get("ownerReferences") or ()
    )


def _refused(reason: str, message: str) -> _Entry:
    return _Entry(NamespaceState.REFUSED, reason, message)


def _claim(observation: Observation, spec: TenantSpec, name: str) -> _Entry | Write | None:
    """A refusal; or the Namespace write that makes it the Tenant's (None: it is as wanted)."""
    tenant, body = observation.tenant, observation.namespaces.get(name, ObservedNamespace(None))
    if name in RESERVED or name.startswith(RESERVED_PREFIX):
        return _refused(
            "NamespaceReserved", f"namespace {name} belongs to the cluster; no Tenant may hold it"
        )
    if body.body is None:
        return Write(name, None, namespace(tenant, spec, name), create=True)
    if _terminating(body.body):
        return _Entry(
            NamespaceState.TERMINATING,
            "NamespaceTerminating",
            f"namespace {name} is being deleted; it is created again once it is gone",
        )
    owner = claimed_by(body.body)
    if owner is not None and not _labelled_for(body.body, tenant):
        return _refused(
            "NamespaceOwnedByAnotherTenant", f"namespace {name} belongs to Tenant {owner}"
        )
    held = any(_ours(tenant, child) for child in body.children.values())
    if owner is None and (body.workflows or body.agents) and not held:
        return _refused(
            "NamespaceNotEmpty",
            f"namespace {name} is not labelled for a Tenant and holds"
            f" {len(body.workflows)} Workflows and {body.agents} Agents: label it"
            f" {LABEL_TENANT}={tenant.label} to adopt it as it is, or empty it",
        )
    wanted = {"metadata": namespace_metadata(tenant, spec)}
    if covers(body.body, wanted):
        return None
    return Write(name, None, replacement(body.body, wanted), create=False)


def _keep(observation: Observation, spec: TenantSpec, name: str) -> _Entry:
    """A namespace of the spec: claimed, its children as wanted; or why not."""
    tenant = observation.tenant
    claim = _claim(observation, spec, name)
    if isinstance(claim, _Entry):
        return claim
    found = observation.namespaces.get(name, ObservedNamespace(None))
    wanted = desired(tenant, spec, observation.settings, name)
    writes = [] if claim is None else [claim]
    deletes: list[Target] = []
    for child, observed in found.children.items():
        if not _ours(tenant, observed):
            return _refused(
                "ChildNotOwned",
                f"{child.kind} {name}/{child.child_name} exists and does not belong to"
                f" Tenant {tenant.name}",
            )
        if child not in wanted:
            deletes.append((name, child))
    for child, body in wanted.items():
        current = found.children.get(child)
        if current is None:
            writes.append(Write(name, child, body, create=True))
        elif not covers(current, body):
            writes.append(Write(name, child, replacement(current, body), create=False))
    refusal = next(
        (
            (child, message)
            for (where, child), message in observation.refusals.items()
            if where == name
        ),
        None,
    )
    if refusal is not None:
        target, message = refusal
        kind = "Namespace" if target is None else target.kind
        said = f"namespace {name}: {message}"
        return _Entry(NamespaceState.REFUSED, f"{kind}Refused", said, writes, deletes)
    events = []
    if claim is not None and claim.create:
        events.append(Event(EventType.NORMAL, "NamespaceCreated", f"created namespace {name}"))
    elif claim is not None and claimed_by(found.body or {}) is None:
        events.append(Event(EventType.NORMAL, "NamespaceAdopted", f"adopted namespace {name}"))
    return _Entry(NamespaceState.READY, "NamespaceReady", "", writes, deletes, events)


def _release(observation: Observation, name: str) -> tuple[list[Write], list[Target]]:
    """Retain's cleanup of one namespace: the Tenant's children deleted, its label removed."""
    found = observation.namespaces[name]
    assert found.body is not None
    deletes: list[Target] = [
        (name, child) for child, body in found.children.items() if _ours(observation.tenant, body)
    ]
    stripped = without(found.body, (LABEL_TENANT,), (TENANT_ANNOTATION,))
    return [Write(name, None, stripped, create=False)], deletes


def _ours_now(observation: Observation) -> list[str]:
    """The namespaces labelled for the Tenant and not being deleted."""
    return [
        name
        for name, found in observation.namespaces.items()
        if _labelled_for(found.body, observation.tenant)
        and found.body is not None
        and not _terminating(found.body)
    ]


def _condition(
    observation: Observation, kind: str, holds: bool, reason: str, message: str
) -> Condition:
    before = find_condition(observation.status.conditions, kind)
    return next_condition(
        before, kind, holds, reason, message, observation.now, observation.generation
    )


def _usage(
    observation: Observation, spec: TenantSpec | None, counted: Sequence[str]
) -> dict[str, Any]:
    found = [observation.namespaces.get(name, ObservedNamespace(None)) for name in counted]
    used = usage.tokens(w for n in found for w in n.workflows)
    budget = spec.limits.token_budget if spec is not None else None
    return {
        "running_tasks": usage.running_tasks(j for n in found for j in n.jobs),
        "workflows": usage.workflow_counts(w for n in found for w in n.workflows),
        "tokens_used": used,
        "budget_remaining": None if budget is None else max(0, budget - used),
    }


def _unique(names: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(names))


def _warnings(observation: Observation, entries: Mapping[str, _Entry]) -> list[Event]:
    """A Warning Event for each namespace whose problem is new since the last status."""
    before = {entry.name: entry for entry in observation.status.namespaces}
    events = []
    for name, entry in entries.items():
        if entry.state is not NamespaceState.REFUSED:
            continue
        previous = before.get(name)
        if previous is None or (previous.state, previous.reason, previous.message) != (
            entry.state,
            entry.reason,
            entry.message,
        ):
            events.append(Event(EventType.WARNING, entry.reason, entry.message))
    return events


def _status(
    observation: Observation,
    entries: Mapping[str, _Entry],
    phase: TenantPhase,
    ready: tuple[bool, str, str],
    namespaces_ready: tuple[bool, str, str],
    counted: Sequence[str],
) -> TenantStatus:
    spec = observation.spec if isinstance(observation.spec, TenantSpec) else None
    ready_count = sum(1 for e in entries.values() if e.state is NamespaceState.READY)
    counts = _usage(observation, spec, counted)
    budget = _budget_condition(observation, spec, counts["tokens_used"])
    return TenantStatus(
        phase=phase,
        namespaces=[
            TenantNamespace(name=name, state=e.state, reason=e.reason, message=e.message)
            for name, e in entries.items()
        ],
        namespaces_ready=f"{ready_count}/{len(entries)}",
        observed_generation=observation.generation,
        conditions=[
            _condition(observation, READY, *ready),
            _condition(observation, NAMESPACES_READY, *namespaces_ready),
            *([budget] if budget else []),
        ],
        **counts,
    )


def _budget_condition(
    observation: Observation, spec: TenantSpec | None, used: int
) -> Condition | None:
    """WithinBudget, while ``limits.tokenBudget`` is set: False once the tokens used reach it."""
    budget = spec.limits.token_budget if spec is not None else None
    if budget is None:
        return None
    message = f"{used} of {budget} tokens used (limits.tokenBudget)"
    if used < budget:
        return _condition(observation, WITHIN_BUDGET, True, WITHIN_BUDGET, message)
    message += "; no new task attempt starts until the budget is raised"
    return _condition(observation, WITHIN_BUDGET, False, TOKEN_BUDGET_EXCEEDED, message)


def _budget_event(observation: Observation, status: TenantStatus) -> list[Event]:
    """A Warning when the budget has just been spent."""
    now = find_condition(status.conditions, WITHIN_BUDGET)
    before = find_condition(observation.status.conditions, WITHIN_BUDGET)
    if now is None or now.reason != TOKEN_BUDGET_EXCEEDED:
        return []
    if before is not None and before.reason == TOKEN_BUDGET_EXCEEDED:
        return []
    return [Event(EventType.WARNING, TOKEN_BUDGET_EXCEEDED, now.message)]


def _said(observation: Observation, kind: str, verdict: tuple[bool, str, str]) -> bool:
    """Whether the last status already holds this condition (its Event was posted then)."""
    before = find_condition(observation.status.conditions, kind)
    return before is not None and (before.reason, before.message) == verdict[1:]


def _invalid(observation: Observation, spec: InvalidSpec) -> Decision:
    verdict = (False, "InvalidSpec", "; ".join(spec.problems))
    status = _status(observation, {}, TenantPhase.ERROR, verdict, verdict, [])
    said = _said(observation, READY, verdict)
    return Decision(
        writes=[],
        deletes=[],
        finalizers=None,
        status=status,
        events=[] if said else [Event(EventType.WARNING, "InvalidSpec", verdict[2])],
        resync=True,
    )


def reconcile(observation: Observation) -> Decision:
    """The writes, deletes, finalizers, status and Events that bring the Tenant to its spec."""
    if observation.deleting:
        return _clean_up(observation)
    spec = observation.spec
    if isinstance(spec, InvalidSpec):
        return _invalid(observation, spec)
    entries = {name: _keep(observation, spec, name) for name in _unique(spec.namespaces)}
    writes = [w for e in entries.values() for w in e.writes]
    deletes = [d for e in entries.values() for d in e.deletes]
    events = [event for e in entries.values() for event in e.events]
    for name in _ours_now(observation):
        if name not in entries:
            released_writes, released_deletes = _release(observation, name)
            writes += released_writes
            deletes += released_deletes
            events.append(
                Event(EventType.NORMAL, "NamespaceReleased", f"released namespace {name}")
            )
    problems = [e for e in entries.values() if e.state is not NamespaceState.READY]
    if problems:
        verdict = (False, problems[0].reason, "; ".join(e.message for e in problems))
    else:
        verdict = (True, "AllNamespacesReady", f"{len(entries)}/{len(entries)} namespaces ready")
    ready = verdict if problems else (True, "TenantReady", verdict[2])
    if any(e.state is NamespaceState.REFUSED for e in problems):
        phase = TenantPhase.ERROR
    else:
        phase = TenantPhase.PENDING if problems else TenantPhase.ACTIVE
    counted = [
        name
        for name, entry in entries.items()
        if entry.state is NamespaceState.READY
        or _labelled_for(
            observation.namespaces.get(name, ObservedNamespace(None)).body, observation.tenant
        )
    ]
    missing = FINALIZER not in observation.finalizers
    status = _status(observation, entries, phase, ready, verdict, counted)
    return Decision(
        writes=writes,
        deletes=deletes,
        finalizers=(*observation.finalizers, FINALIZER) if missing else None,
        status=status,
        events=_warnings(observation, entries) + events + _budget_event(observation, status),
        resync=bool(problems),
    )


def _clean_up(observation: Observation) -> Decision:
    """Release (Retain) or delete (Delete) every namespace labelled for the Tenant."""
    if FINALIZER not in observation.finalizers:
        return Decision([], [], None, observation.status, [], resync=False)
    spec = observation.spec
    policy = spec.deletion_policy if isinstance(spec, TenantSpec) else DeletionPolicy.RETAIN
    left = _ours_now(observation)
    writes: list[Write] = []
    deletes: list[Target] = []
    events = []
    for name in left:
        if policy is DeletionPolicy.DELETE:
            deletes.append((name, None))
            events.append(Event(EventType.NORMAL, "NamespaceDeleted", f"deleted namespace {name}"))
        else:
            released_writes, released_deletes = _release(observation, name)
            writes += released_writes
            deletes += released_deletes
            events.append(
                Event(EventType.NORMAL, "NamespaceReleased", f"released namespace {name}")
            )
    if not left:
        finalizers = tuple(f for f in observation.finalizers if f != FINALIZER)
        return Decision([], [], finalizers, observation.status, [], resync=False)
    refusal = next(iter(observation.refusals.values()), None)
    if refusal is None:
        verdict = (
            False,
            "CleaningUp",
            f"deletionPolicy {policy.value}: {len(left)} namespaces left",
        )
    else:
        verdict = (False, "CleanUpRefused", refusal)
        events = (
            []
            if _said(observation, READY, verdict)
            else [Event(EventType.WARNING, verdict[1], refusal)]
        )
    status = observation.status.model_copy(
        update={
            "phase": TenantPhase.TERMINATING,
            "conditions": [
                _condition(observation, READY, *verdict),
                *(c for c in observation.status.conditions if c.type != READY),
            ],
        }
    )
    return Decision(
        writes=writes,
        deletes=deletes,
        finalizers=None,
        status=status,
        events=events,
        resync=refusal is not None,
        again=refusal is None,
    )
