"""What the core schedules: units, each one Job per attempt with an entry in status.

A plain task is one unit, keyed by its name. A task that expands at run time
(``forEach``, ``candidates``, ``supervise``) is a parent whose units are its instances,
keyed ``NAME.SUFFIX`` (``INSTANCE_SEPARATOR``): ``NAME.INDEX`` for a forEach,
``NAME.candidate-I`` and ``NAME.judge`` for candidates, a supervise task's turns
(``NAME.turn-N``, on the supervisor) and their delegations (``NAME.turn-N.M``, on a
member). Each has its own attempts, Jobs, output ConfigMap and status entry, and runs
the parent's template (on the parent's Agent unless the unit names another). The
parent's own entry records the expansion and sums its instances up; it never has a Job.
This module only names and describes units; deciding which exist is the core's,
``fan_out``'s, ``candidates``' and ``supervise``'s job.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from troupe_operator.api import INSTANCE_SEPARATOR, ItemRef, SuperviseInput, TaskSpec, WorkflowSpec
from troupe_operator.api.candidates import JUDGE_SUFFIX
from troupe_operator.api.workflow import instance_key


def candidate_keys(task: TaskSpec) -> list[str]:
    """The keys of a candidates task's candidates, in order."""
    assert task.candidates is not None
    return [instance_key(task.name, label) for label in task.candidates.labels()]


def judge_key(task: str) -> str:
    return instance_key(task, JUDGE_SUFFIX)


def turn_key(task: str, turn: int) -> str:
    """The key of a supervise task's turn (from 1)."""
    return f"{task}{INSTANCE_SEPARATOR}turn-{turn}"


def delegation_key(task: str, turn: int, index: int) -> str:
    """The key of a turn's delegation (from 1, in the decision's order)."""
    return f"{turn_key(task, turn)}{INSTANCE_SEPARATOR}{index}"


def possible_units(spec: WorkflowSpec) -> Iterator[str]:
    """Every key a run of ``spec`` may use, bounded by each forEach's ``maxItems`` and each
    candidates' count, supervise's ``maxIterations`` and ``maxConcurrent``: the run's task
    identity may write exactly these outputs, granted before the first Job."""
    for task in spec.tasks:
        if task.for_each is not None:
            yield from (instance_key(task.name, i) for i in range(task.for_each.max_items))
        elif task.candidates is not None:
            yield from (*candidate_keys(task), judge_key(task.name))
        elif task.supervise is not None:
            turns, width = task.supervise.max_iterations, task.supervise.max_concurrent
            for turn in range(1, turns + 1):
                yield turn_key(task.name, turn)
                if turn < turns:  # the last turn's delegations never run (MaxIterations)
                    yield from (delegation_key(task.name, turn, i) for i in range(1, width + 1))
        else:
            yield task.name


def concurrency(spec: TaskSpec) -> int | None:
    """Most units of ``spec`` running at once: forEach's parallelism, supervise's
    maxConcurrent; None for no limit of its own."""
    if spec.for_each is not None:
        return spec.for_each.parallelism
    if spec.supervise is not None:
        return spec.supervise.max_concurrent
    return None


def parent_of(key: str) -> str:
    """The spec task a status key belongs to: itself, or the parent of an instance."""
    return key.split(INSTANCE_SEPARATOR, 1)[0]


def suffix_of(key: str) -> str:
    """What follows the parent's name in an instance's key (``candidate-2``)."""
    return key.split(INSTANCE_SEPARATOR, 1)[-1]


@dataclass(frozen=True)
class Unit:
    """One schedulable thing: a status key and the spec task whose template and Agent it runs.

    ``agent`` runs it instead of the spec's (a candidate on one of ``candidates.agents``,
    a judge); ``judged`` makes it a judge of those candidates' outputs (their keys).
    ``settled`` is the spec as :func:`~troupe_operator.workflow.tasks.settle_task` sees
    it: named by the key, with no dependencies or condition of its own (an instance
    exists only once its parent was ready and its condition held).
    """

    key: str
    spec: TaskSpec
    item: ItemRef | None = None
    agent: str | None = None
    judged: tuple[str, ...] = ()
    supervise: SuperviseInput | None = None
    """What a supervise task's unit reads besides the task's inputs."""

    @property
    def choosing(self) -> TaskSpec:
        """The spec its Agent is chosen by: the task's, or one naming the unit's own Agent
        (a candidate's, a judge's, a supervisor turn's or a delegation's member)."""
        if self.agent is None:
            return self.spec
        return self.spec.model_copy(
            update={"agent": self.agent, "agent_selector": None, "fallback_agents": []}
        )

    @property
    def settled(self) -> TaskSpec:
        if self.key == self.spec.name:
            return self.spec
        return self.spec.model_copy(
            update={"name": self.key, "depends_on": [], "when": None, "for_each": None}
        )
