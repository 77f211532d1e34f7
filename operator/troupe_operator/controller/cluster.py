"""What the operator has seen of the cluster: Jobs by Workflow, Agents by namespace.

Fed by kopf's watches, so a reconcile reads Jobs and Agents from memory
instead of listing them from the API server each time. Missing knowledge is
safe: the core asks for a Job that already exists, the create answers
AlreadyExists, and the Job is adopted.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from troupe_operator.api import AgentSpec
from troupe_operator.workflow.naming import LABEL_WORKFLOW

Body = Mapping[str, Any]
WorkflowKey = tuple[str, str]


def _workflow_of(job: Body) -> WorkflowKey | None:
    metadata = job.get("metadata", {})
    workflow = (metadata.get("labels") or {}).get(LABEL_WORKFLOW)
    return (metadata["namespace"], workflow) if workflow else None


def _observable(job: Body) -> Body:
    """Only what observing a Job reads: a Job's full spec is kilobytes, times thousands."""
    metadata, status = job.get("metadata", {}), job.get("status") or {}
    return {
        "metadata": {
            "name": metadata["name"],
            "namespace": metadata["namespace"],
            "labels": metadata.get("labels") or {},
        },
        "status": {
            key: status[key]
            for key in ("startTime", "completionTime", "conditions", "succeeded")
            if key in status
        },
    }


class ClusterIndex:
    """Thread-safe maps of the Jobs of each Workflow and the Agents of each namespace."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[WorkflowKey, dict[str, Body]] = defaultdict(dict)
        self._agents: dict[str, dict[str, AgentSpec]] = defaultdict(dict)
        self._listed_namespaces: set[str] = set()

    def job_changed(self, body: Body, deleted: bool = False) -> WorkflowKey | None:
        """Record a Job event; the Workflow it belongs to, if it is a task Job."""
        key = _workflow_of(body)
        if key is not None:
            name = body["metadata"]["name"]
            with self._lock:
                if deleted:
                    self._jobs[key].pop(name, None)
                else:
                    self._jobs[key][name] = _observable(body)
        return key

    def job_created(self, body: Body) -> None:
        """Record a Job this operator just created, unless the watch already told of it.

        The watch may deliver a newer version (even the Job's completion) before
        the create call returns; the create's answer must not overwrite it.
        """
        key = _workflow_of(body)
        if key is not None:
            with self._lock:
                self._jobs[key].setdefault(body["metadata"]["name"], _observable(body))

    def jobs(self, key: WorkflowKey) -> list[Body]:
        with self._lock:
            return list(self._jobs.get(key, {}).values())

    def forget_workflow(self, key: WorkflowKey) -> None:
        with self._lock:
            self._jobs.pop(key, None)

    def agent_changed(self, body: Body, deleted: bool = False) -> None:
        """Record an Agent event; an Agent whose spec does not parse counts as absent."""
        metadata = body.get("metadata", {})
        namespace, name = metadata["namespace"], metadata["name"]
        spec: AgentSpec | None = None
        if not deleted:
            try:
                spec = AgentSpec.model_validate(body.get("spec") or {})
            except ValidationError:
                spec = None
        with self._lock:
            if spec is None:
                self._agents[namespace].pop(name, None)
            else:
                self._agents[namespace][name] = spec

    def agents(self, namespace: str, load: Callable[[], Sequence[Body]]) -> Mapping[str, AgentSpec]:
        """The Agents of a namespace; ``load`` lists them the first time it is asked."""
        with self._lock:
            listed = namespace in self._listed_namespaces
        if not listed:
            for body in load():
                self.agent_changed(body)
            with self._lock:
                self._listed_namespaces.add(namespace)
        with self._lock:
            return dict(self._agents[namespace])
