"""What the core schedules: units, each one Job per attempt with an entry in status.

A plain task is one unit, keyed by its name. A task that expands at run time
(``forEach``) is a parent whose units are its instances, keyed ``NAME.INDEX``
(``INSTANCE_SEPARATOR``): each has its own attempts, Jobs, output ConfigMap and
status entry, and runs the parent's template and Agent. The parent's own entry
records the expansion and sums its instances up; it never has a Job. This module
only names and describes units; deciding which exist is the core's and
``fan_out``'s job.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from troupe_operator.api import INSTANCE_SEPARATOR, ItemRef, TaskSpec, WorkflowSpec
from troupe_operator.api.workflow import instance_key


def possible_units(spec: WorkflowSpec) -> Iterator[str]:
    """Every key a run of ``spec`` may use, bounded by each forEach's ``maxItems``: the run's
    task identity may write exactly these outputs, granted before the first Job."""
    for task in spec.tasks:
        if task.for_each is None:
            yield task.name
        else:
            yield from (instance_key(task.name, i) for i in range(task.for_each.max_items))


def parent_of(key: str) -> str:
    """The spec task a status key belongs to: itself, or the parent of an instance."""
    return key.split(INSTANCE_SEPARATOR, 1)[0]


@dataclass(frozen=True)
class Unit:
    """One schedulable thing: a status key and the spec task whose template and Agent it runs.

    ``settled`` is the spec as :func:`~troupe_operator.workflow.tasks.settle_task` sees
    it: named by the key, with no dependencies or condition of its own (an instance
    exists only once its parent was ready and its condition held).
    """

    key: str
    spec: TaskSpec
    item: ItemRef | None = None

    @property
    def settled(self) -> TaskSpec:
        if self.key == self.spec.name:
            return self.spec
        return self.spec.model_copy(
            update={"name": self.key, "depends_on": [], "when": None, "for_each": None}
        )
