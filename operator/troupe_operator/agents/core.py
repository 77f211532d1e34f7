"""What an Agent's children and status should be, from what was observed of it.

``reconcile`` is pure: in go the Agent (its spec, or why it does not parse),
its current status, the keys of the Secret its key comes from, its children
as observed, what was found of its members (a team's), and the writes the
API server refused last time; out come the
writes (each a whole object: created when absent, else replaced with the
observed ``resourceVersion``, so a concurrent change makes it fail with 409
rather than be lost), the deletes, the status and Events. A child is written
only when what is observed does not already hold what is wanted (fields the
API server defaults are left alone), so a steady Agent causes no writes.

It refuses to write over what it does not own: a child of the same name
without the Agent as controller is reported, never replaced. It refuses to
start pods that cannot start: while the referenced Secret or its key is
missing, the Deployment is neither created nor changed, and the Agent's
status names the Secret and the key. It never sees a Secret's values, only
its keys.

A team is checked, never held: while a member Agent is missing (or is the
team itself) or serves no pods, the ``MembersReady`` condition names it and
the Agent is Degraded, but its pods run, since a member may come later and
the pods call members only when invoked.

The status has two writers, and this module decides which conditions are
the operator's (``OWNED_CONDITIONS``): those it computes afresh each time;
any other condition (the supervisor pod's ``ModelReady``) is kept as it was
observed. Conditions are one list, written whole, so the shell guards the
write with the Agent's ``resourceVersion``: a condition the pod wrote since
the Agent was read makes the write fail with 409 instead of being dropped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from troupe_operator.agents.children import (
    AgentRef,
    Body,
    Child,
    ServeSettings,
    desired,
)
from troupe_operator.api import (
    AgentPhase,
    AgentSpec,
    AgentStatus,
    Condition,
    ConditionStatus,
)
from troupe_operator.desired import covers, replacement
from troupe_operator.workflow import Event, EventType, InvalidSpec
from troupe_operator.workflow.conditions import find_condition, next_condition
from troupe_operator.workflow.naming import LABEL_MANAGED_BY, MANAGED_BY

READY = "Ready"
PROGRESSING = "Progressing"
MEMBERS_READY = "MembersReady"
NOT_TENANTED = "NamespaceNotTenanted"
OWNED_CONDITIONS = frozenset({READY, PROGRESSING, MEMBERS_READY})
"""The condition types the operator computes; every other type is the supervisor pod's."""


@dataclass(frozen=True)
class Observation:
    agent: AgentRef
    generation: int
    spec: AgentSpec | InvalidSpec
    status: AgentStatus
    secret_keys: frozenset[str] | None
    """Keys of the Secret the spec names (None: no such Secret); unused without a reference."""
    children: Mapping[Child, Body]
    settings: ServeSettings
    now: datetime
    members: Mapping[str, int | None] = field(default_factory=dict)
    """``replicas`` of each member Agent the spec lists (None or left out: no such Agent)."""
    refusals: Mapping[Child, str] = field(default_factory=dict)
    """Writes the API server refused for good (403, 422), with its message."""
    tenancy_refusal: str | None = None
    """Why the installation will not serve Agents in this namespace (no Tenant owns it):
    no child is written or deleted, so pods already serving go on; ``replicas: 0``
    Agents serve nothing and are not refused."""


@dataclass(frozen=True)
class Write:
    """Create ``body`` (``create``), or replace the observed object with it."""

    child: Child
    body: Body
    create: bool


@dataclass(frozen=True)
class Decision:
    writes: Sequence[Write]
    deletes: Sequence[tuple[Child, str]]
    status: AgentStatus
    events: Sequence[Event]
    resync: bool
    """Look again after the resync period: something may change that no watched event reports
    (a Secret appearing, a quota freed)."""


@dataclass(frozen=True)
class _Verdict:
    phase: AgentPhase
    reason: str
    message: str


def _ours(agent: AgentRef, child: Child, observed: Body) -> bool:
    metadata = observed.get("metadata") or {}
    if not child.namespaced:
        return (metadata.get("labels") or {}).get(LABEL_MANAGED_BY) == MANAGED_BY
    return any(
        ref.get("uid") == agent.uid and ref.get("controller")
        for ref in metadata.get("ownerReferences") or ()
    )


def _secret_problem(spec: AgentSpec, keys: frozenset[str] | None) -> _Verdict | None:
    secret = spec.model.api_key_secret_ref
    if secret is None:
        return None
    if keys is None:
        return _Verdict(
            AgentPhase.ERROR, "SecretNotFound", f"Secret {secret.name} (key {secret.key}) not found"
        )
    if secret.key not in keys:
        return _Verdict(
            AgentPhase.ERROR, "SecretKeyNotFound", f"Secret {secret.name} has no key {secret.key}"
        )
    return None


def _rollout(deployment: Body | None, replicas: int, previous: AgentStatus) -> _Verdict:
    """The Deployment's progress, as ``kubectl rollout status`` reads it."""
    if deployment is None:
        return _Verdict(AgentPhase.PROGRESSING, "DeploymentCreated", "waiting for the Deployment")
    status = deployment.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or ()}
    progressing = conditions.get("Progressing") or {}
    if progressing.get("status") == "False":
        reason = str(progressing.get("reason") or "ProgressDeadlineExceeded")
        return _Verdict(AgentPhase.DEGRADED, reason, str(progressing.get("message") or reason))
    current = int(status.get("observedGeneration") or 0) >= int(
        deployment["metadata"].get("generation") or 1
    )
    ready = int(status.get("readyReplicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    updated = int(status.get("updatedReplicas") or 0)
    if current and ready >= replicas and available >= replicas and updated >= replicas:
        return _Verdict(AgentPhase.READY, "DeploymentAvailable", f"{ready}/{replicas} pods ready")
    if (
        current
        and updated >= replicas
        and previous.phase in (AgentPhase.READY, AgentPhase.DEGRADED)
    ):
        return _Verdict(
            AgentPhase.DEGRADED, "ReplicasUnavailable", f"{ready}/{replicas} pods ready"
        )
    return _Verdict(
        AgentPhase.PROGRESSING, "RollingOut", f"{updated}/{replicas} pods updated, {ready} ready"
    )


def _condition(
    previous: AgentStatus, kind: str, holds: bool, verdict: _Verdict, observation: Observation
) -> Condition:
    before = find_condition(previous.conditions, kind)
    return next_condition(
        before,
        kind,
        holds,
        verdict.reason,
        verdict.message,
        observation.now,
        observation.generation,
    )


def _members(observation: Observation, spec: AgentSpec) -> _Verdict | None:
    """Whether every member of a team is another Agent that serves; None without members."""
    if not spec.members:
        return None
    name = observation.agent.name
    others = [member for member in spec.members if member != name]
    missing = [member for member in others if observation.members.get(member) is None]
    idle = [member for member in others if observation.members.get(member) == 0]
    problems = []
    if name in spec.members:
        problems.append(f"Agent {name} lists itself as a member: a team cannot delegate to itself")
    if missing:
        problems.append(f"member Agents not found: {', '.join(missing)}")
    if idle:
        problems.append(f"member Agents with replicas 0, which serve nothing: {', '.join(idle)}")
    if not problems:
        return _Verdict(
            AgentPhase.READY, "MembersServed", f"every member Agent serves: {', '.join(others)}"
        )
    reason = "MemberNotFound" if missing or name in spec.members else "MemberNotServed"
    return _Verdict(AgentPhase.DEGRADED, reason, "; ".join(problems))


def _status(
    observation: Observation, verdict: _Verdict, replicas: int, members: _Verdict | None
) -> AgentStatus:
    """The operator's fields and conditions afresh; the conditions it does not own as found."""
    previous = observation.status
    deployment = observation.children.get(Child.DEPLOYMENT) or {}
    ready = int((deployment.get("status") or {}).get("readyReplicas") or 0) if replicas else 0
    conditions = [
        _condition(previous, READY, verdict.phase is AgentPhase.READY, verdict, observation),
        _condition(
            previous, PROGRESSING, verdict.phase is AgentPhase.PROGRESSING, verdict, observation
        ),
    ]
    if members is not None:
        conditions.append(
            _condition(
                previous, MEMBERS_READY, members.phase is AgentPhase.READY, members, observation
            )
        )
    conditions += [c for c in previous.conditions if c.type not in OWNED_CONDITIONS]
    return previous.model_copy(
        update={
            "phase": verdict.phase,
            "replicas": replicas,
            "ready_replicas": ready,
            "ready": f"{ready}/{replicas}",
            "observed_generation": observation.generation,
            "conditions": conditions,
        }
    )


def _plan(
    observation: Observation, wanted: Mapping[Child, Body], held: frozenset[Child]
) -> tuple[list[Write], list[tuple[Child, str]], _Verdict | None]:
    """Writes for what differs, deletes for what is no longer wanted, and any child not ours.

    ``held`` children are left as they are: neither written nor deleted.
    """
    agent, writes, deletes = observation.agent, [], []
    for child, observed in observation.children.items():
        if not _ours(agent, child, observed):
            name = observed["metadata"]["name"]
            message = f"{child.kind} {name} exists and does not belong to Agent {agent.name}"
            return [], [], _Verdict(AgentPhase.ERROR, "ChildNotOwned", message)
        if child not in wanted and child not in held:
            deletes.append((child, observed["metadata"]["name"]))
    for child, body in wanted.items():
        current = observation.children.get(child)
        if child in held:
            continue
        if current is None:
            writes.append(Write(child, body, create=True))
        elif not covers(current, body):
            writes.append(Write(child, replacement(current, body), create=False))
    return writes, deletes, None


def reconcile(observation: Observation) -> Decision:
    """The writes, deletes, status and Events that bring the Agent's children to its spec."""
    spec, agent = observation.spec, observation.agent
    if isinstance(spec, InvalidSpec):
        verdict = _Verdict(AgentPhase.ERROR, "InvalidSpec", "; ".join(spec.problems))
        return _decision(observation, [], [], verdict, 0, None)
    problem = _secret_problem(spec, observation.secret_keys)
    untenanted = observation.tenancy_refusal if spec.replicas else None
    wanted = desired(agent, spec, observation.settings) if spec.replicas else {}
    held = frozenset({Child.DEPLOYMENT} if problem is not None and spec.replicas else ())
    if untenanted:
        held = frozenset(Child)
    writes, deletes, conflict = _plan(observation, wanted, held)
    refused = next(iter(observation.refusals.items()), None)
    if conflict is not None:
        verdict = conflict
    elif untenanted:
        verdict = _Verdict(AgentPhase.ERROR, NOT_TENANTED, untenanted)
    elif problem is not None:
        verdict = problem
    elif refused is not None:
        child, message = refused
        verdict = _Verdict(AgentPhase.ERROR, f"{child.kind}Refused", message)
    elif not spec.replicas:
        verdict = _Verdict(AgentPhase.READY, "TasksOnly", "runs only in workflow tasks")
    else:
        deployment = observation.children.get(Child.DEPLOYMENT)
        verdict = _rollout(deployment, spec.replicas, observation.status)
        if any(w.child is Child.DEPLOYMENT for w in writes):
            verdict = _Verdict(AgentPhase.PROGRESSING, "RollingOut", "the pods' spec changed")
    members = _members(observation, spec)
    if (
        members is not None
        and members.phase is not AgentPhase.READY
        and verdict.phase not in (AgentPhase.ERROR, AgentPhase.DEGRADED)
    ):
        verdict = members
    return _decision(observation, writes, deletes, verdict, spec.replicas, members)


def _decision(
    observation: Observation,
    writes: list[Write],
    deletes: list[tuple[Child, str]],
    verdict: _Verdict,
    replicas: int,
    members: _Verdict | None,
) -> Decision:
    """The Decision, with a Warning Event for each problem that is new since the last status."""
    status = _status(observation, verdict, replicas, members)
    before = find_condition(observation.status.conditions, READY)
    events = []
    if verdict.phase in (AgentPhase.ERROR, AgentPhase.DEGRADED) and (
        before is None or before.reason != verdict.reason
    ):
        events.append(Event(EventType.WARNING, verdict.reason, verdict.message))
    team = find_condition(observation.status.conditions, MEMBERS_READY)
    if members is not None and members.phase is not AgentPhase.READY:
        said = (
            team is not None
            and team.status is ConditionStatus.FALSE
            and (team.reason, team.message) == (members.reason, members.message)
        )
        warning = Event(EventType.WARNING, members.reason, members.message)
        if not said and warning not in events:
            events.append(warning)
    return Decision(
        writes=writes,
        deletes=deletes,
        status=status,
        events=events,
        resync=verdict.phase is not AgentPhase.READY,
    )
