"""supervise: a supervisor Agent's loop over member Agents, run as units, every decision recorded.

Turn N of task S is the unit ``S.turn-N``, run on the supervisor Agent: its pod renders the
task's prompt (the request), reads the earlier turns' decisions and their delegations'
outputs from their ConfigMaps, and asks the supervisor's model to delegate steps to members
or to finish. It writes the decision (the instructions) as its output and reports only its
shape, the members or that it finished (``TaskReport.decision``). The core records each
decision in the parent's status (``supervise.turns``) the first time it sees the turn
succeed, starts one unit per delegation (``S.turn-N.M`` on the member, whose pod reads its
instruction from the turn's ConfigMap) and, once they all succeeded, the next turn. The turn
that finishes is the parent's result (``result_of``): its output is the answer.

The loop fails on a turn or a delegation that failed for good (after its retries), on a
decision that names a non-member or more than ``maxConcurrent`` steps (a pod's report is not
trusted with the choice of Agents), and when the last of ``maxIterations`` turns delegates
again (reason ``MaxIterations``; those delegations are recorded, not run). Everything decided
is in status and unit keys are deterministic, so a restarted operator continues the loop
without running a turn or a delegation twice. This module refuses to look at Jobs: units are
settled as ordinary tasks by the core.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Final

from troupe_operator.api import (
    InstructionRef,
    SupervisedDelegation,
    SuperviseInput,
    SuperviseStatus,
    SupervisorTurn,
    TaskPhase,
    TaskSpec,
    TaskStatus,
    TurnDecision,
    TurnRefs,
)
from troupe_operator.workflow.actions import Event, EventType
from troupe_operator.workflow.naming import WorkflowRef
from troupe_operator.workflow.summary import brief
from troupe_operator.workflow.tasks import FINISHED
from troupe_operator.workflow.units import Unit, delegation_key, turn_key

MAX_ITERATIONS: Final = "MaxIterations"
TURN_FAILED: Final = "TurnFailed"
DELEGATION_FAILED: Final = "DelegationFailed"
INVALID_DECISION: Final = "InvalidDecision"


def started(spec: TaskSpec, previous: TaskStatus, now: datetime) -> TaskStatus:
    """The parent once ready: Running, its first turn recorded (not yet decided)."""
    first = SupervisorTurn(unit=turn_key(spec.name, 1))
    return _with_turns(
        previous.model_copy(
            update={
                "phase": TaskPhase.RUNNING,
                "started_at": now,
                "message": "turn 1: the supervisor is deciding",
            }
        ),
        [first],
    )


def units_of(spec: TaskSpec, parent: TaskStatus, workflow: WorkflowRef) -> Iterator[Unit]:
    """The units the parent's record has started: each turn, then its delegations; a turn
    reads every earlier turn's decision and delegations' outputs, by ConfigMap."""
    assert spec.supervise is not None
    history: list[TurnRefs] = []
    for turn in parent.supervise.turns if parent.supervise else ():
        supervisor = SuperviseInput(history=list(history))
        yield Unit(turn.unit, spec, agent=spec.supervise.agent, supervise=supervisor)
        decision = workflow.output_config_map(turn.unit)
        outputs = []
        for index, delegation in enumerate(turn.delegations):
            if delegation.unit is None:
                continue  # recorded, not run: the loop stopped at maxIterations
            ref = InstructionRef(turn=turn.unit, decision=decision, index=index)
            member = SuperviseInput(instruction=ref)
            yield Unit(delegation.unit, spec, agent=delegation.member, supervise=member)
            outputs.append(workflow.output_config_map(delegation.unit))
        history.append(TurnRefs(turn=turn.unit, decision=decision, outputs=outputs))


def advance(
    spec: TaskSpec, parent: TaskStatus, units: Mapping[str, TaskStatus], now: datetime
) -> tuple[TaskStatus, Event | None]:
    """One step of the loop from the units' statuses: the last turn's decision recorded, the
    next turn started, or the parent finished; the parent as it was when nothing is new."""
    record = parent.supervise
    if record is None or parent.phase in FINISHED:
        return parent, None
    assert spec.supervise is not None
    turns = list(record.turns)
    number, last = len(turns), turns[-1]
    if not last.decided:
        return _decide(spec, parent, units[last.unit], now)
    delegated = [(d.unit, units[d.unit]) for d in last.delegations if d.unit is not None]
    done = sum(1 for _, task in delegated if task.phase in FINISHED)
    if done < len(delegated):
        message = f"turn {number}: {done} of {len(delegated)} delegations finished"
        return _running(parent, message), None
    failed = [(key, task) for key, task in delegated if task.phase != TaskPhase.SUCCEEDED]
    if failed:
        key, task = failed[0]
        member = next(d.member for d in last.delegations if d.unit == key)
        message = (
            f"delegation '{key}' to member '{member}' {task.phase.value.lower()}: "
            f"{task.message or 'no message'}; the supervisor loop stops"
        )
        return _failed(parent, DELEGATION_FAILED, message, now), None
    turns.append(SupervisorTurn(unit=turn_key(spec.name, number + 1)))
    message = f"turn {number + 1}: the supervisor is deciding"
    return _running(_with_turns(parent, turns), message), None


def _decide(
    spec: TaskSpec, parent: TaskStatus, turn: TaskStatus, now: datetime
) -> tuple[TaskStatus, Event | None]:
    """The last turn, not decided yet: its decision recorded once it succeeded."""
    assert spec.supervise is not None and parent.supervise is not None
    turns = list(parent.supervise.turns)
    number, last = len(turns), turns[-1]
    if turn.phase != TaskPhase.SUCCEEDED:
        if turn.phase not in FINISHED:
            return _running(parent, f"turn {number}: the supervisor is deciding"), None
        message = f"turn '{last.unit}' {turn.phase.value.lower()}: {turn.message or 'no message'}"
        return _failed(parent, TURN_FAILED, message, now), None
    limit = spec.supervise.max_iterations
    decided = _decided(spec, last, number, turn.decision, run=number < limit)
    if isinstance(decided, str):
        return _failed(parent, INVALID_DECISION, decided, now), None
    turns[-1] = decided
    members = ", ".join(d.member for d in decided.delegations)
    what = "finished" if decided.finished else f"delegated to {members}"
    event = Event(EventType.NORMAL, "TurnDecided", f"task '{spec.name}' turn {number} {what}")
    recorded = _with_turns(parent, turns)
    if decided.finished:
        done = recorded.model_copy(
            update={
                "phase": TaskPhase.SUCCEEDED,
                "finished_at": now,
                "result_of": last.unit,
                "output": turn.output,
                "preview": turn.preview,
                "message": f"the supervisor finished at turn {number} of at most {limit}",
            }
        )
        return done, event
    if number == limit:
        message = (
            f"the supervisor did not finish within maxIterations={limit}: turn {number} "
            f"delegated again ({members}), which was not run"
        )
        return _failed(recorded, MAX_ITERATIONS, message, now), event
    count = len(decided.delegations)
    return _running(recorded, f"turn {number}: {count} delegation(s) running"), event


def _decided(
    spec: TaskSpec, turn: SupervisorTurn, number: int, decision: TurnDecision | None, run: bool
) -> SupervisorTurn | str:
    """The turn with its decision, or why the decision cannot be taken."""
    assert spec.supervise is not None
    where = f"turn '{turn.unit}'"
    if decision is None:
        return f"{where} succeeded, but its pod left no report: its decision is unknown"
    if decision.finished:
        if decision.members:
            return f"{where} reported both a delegation and finish"
        return turn.model_copy(update={"finished": True})
    if not decision.members:
        return f"{where} reported neither a delegation nor finish"
    members = spec.supervise.members
    stranger = next((m for m in decision.members if m not in members), None)
    if stranger is not None:
        return f"{where} delegated to '{stranger}', not a member ({', '.join(members)})"
    width = spec.supervise.max_concurrent
    if len(decision.members) > width:
        return f"{where} delegated {len(decision.members)} steps, more than maxConcurrent ({width})"
    delegations = [
        SupervisedDelegation(
            member=member, unit=delegation_key(spec.name, number, index) if run else None
        )
        for index, member in enumerate(decision.members, start=1)
    ]
    return turn.model_copy(update={"delegations": delegations})


def _with_turns(parent: TaskStatus, turns: list[SupervisorTurn]) -> TaskStatus:
    record = SuperviseStatus(iterations=len(turns), turns=turns)
    return parent.model_copy(update={"supervise": record})


def _running(parent: TaskStatus, message: str) -> TaskStatus:
    return parent.model_copy(update={"phase": TaskPhase.RUNNING, "message": message})


def _failed(parent: TaskStatus, reason: str, message: str, now: datetime) -> TaskStatus:
    return parent.model_copy(
        update={
            "phase": TaskPhase.FAILED,
            "reason": reason,
            "finished_at": now,
            "message": brief(message),
        }
    )
