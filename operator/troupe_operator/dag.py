"""Graph facts about a Workflow's tasks: cycles and who is upstream of whom.

Kept apart from validation and scheduling because both need the same answers,
and a second hand-written graph walk would be a second place for bugs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from graphlib import CycleError, TopologicalSorter

Dependencies = Mapping[str, Sequence[str]]
"""Each task's name mapped to the names of the tasks it depends on."""


def find_cycle(dependencies: Dependencies) -> list[str] | None:
    """A cycle as ``[a, b, c, a]`` where each task depends on the next, or None."""
    try:
        TopologicalSorter(dependencies).prepare()
    except CycleError as error:
        dependency_order: list[str] = error.args[1]
        return list(reversed(dependency_order))
    return None


def topological_order(dependencies: Dependencies) -> list[str]:
    """Every task after all of its dependencies (the graph must be acyclic)."""
    return list(TopologicalSorter(dependencies).static_order())


def ancestors(dependencies: Dependencies) -> dict[str, frozenset[str]]:
    """For each task, every task it depends on directly or through others."""
    result: dict[str, frozenset[str]] = {}
    for task in topological_order(dependencies):
        upstream: set[str] = set()
        for dependency in dependencies.get(task, ()):
            upstream.add(dependency)
            upstream |= result.get(dependency, frozenset())
        result[task] = frozenset(upstream)
    return result


def remaining_path(dependencies: Dependencies) -> dict[str, int]:
    """For each task, how many tasks the longest path from it to a task nothing depends on
    holds, itself included: the work that still follows it, at the least."""
    dependents: dict[str, list[str]] = {task: [] for task in dependencies}
    for task, upstream in dependencies.items():
        for dependency in upstream:
            dependents.setdefault(dependency, []).append(task)
    result: dict[str, int] = {}
    for task in reversed(topological_order(dependencies)):
        result[task] = 1 + max((result[after] for after in dependents.get(task, ())), default=0)
    return result
