"""Task outputs read from their ConfigMaps only when the core asks for them.

An output can be close to 1 MiB; reading every one on every reconcile would
cost more than the rest of the work together. The core reads an output when
a task has just succeeded and when a downstream prompt is rendered; this
mapping fetches it then, once, and remembers it.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping

from troupe_operator.controller.cluster import WorkflowKey
from troupe_operator.workflow.observation import TaskOutput

Loader = Callable[[str], TaskOutput | None]


class OutputCache:
    """Outputs already read, per Workflow; an output never changes once written."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._outputs: dict[WorkflowKey, dict[str, TaskOutput]] = defaultdict(dict)

    def get(self, workflow: WorkflowKey, config_map: str, load: Loader) -> TaskOutput | None:
        with self._lock:
            cached = self._outputs[workflow].get(config_map)
        if cached is None:
            cached = load(config_map)
            if cached is not None:
                with self._lock:
                    self._outputs[workflow][config_map] = cached
        return cached

    def forget(self, workflow: WorkflowKey) -> None:
        """Drop a Workflow's outputs: it finished, or is gone."""
        with self._lock:
            self._outputs.pop(workflow, None)


class LazyOutputs(Mapping[str, TaskOutput]):
    """The outputs of a Workflow's succeeded tasks, read on first access."""

    def __init__(
        self,
        workflow: WorkflowKey,
        config_maps: Mapping[str, str],
        cache: OutputCache,
        load: Loader,
    ) -> None:
        self._workflow = workflow
        self._config_maps = config_maps
        self._cache = cache
        self._load = load

    def __getitem__(self, task: str) -> TaskOutput:
        config_map = self._config_maps[task]
        output = self._cache.get(self._workflow, config_map, self._load)
        if output is None:
            raise KeyError(task)
        return output

    def __iter__(self) -> Iterator[str]:
        return iter(self._config_maps)

    def __len__(self) -> int:
        return len(self._config_maps)
