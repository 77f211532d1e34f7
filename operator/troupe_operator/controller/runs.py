"""What the shell remembers of each live run between reconciles, and what it forgets.

The Workflow itself (the newest version seen, from a watch event or the
answer to our own status write, whichever is newer), and what the cluster
can no longer tell us or is slow to: Jobs that finished (with their pods'
reports, read once), Jobs confirmed gone, Jobs created but not yet seen on
the watch, pods that cannot start, the actions the API server refused, when
the run's Jobs were last listed, which ready tasks wait and since when (for
the metrics). All of it is dropped when the run finishes
or its Workflow is deleted; status, not this memory, is the record, so a
restarted operator loses nothing by starting empty.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from pydantic import ValidationError

from troupe_operator.api import WorkflowSpec, WorkflowStatus
from troupe_operator.controller.observe import JobRecord, gone_job
from troupe_operator.manifests import schema_messages
from troupe_operator.workflow import InvalidSpec, JobRef, ObservedJob, PodProblem, Refusal

Body = Mapping[str, Any]
WorkflowKey = tuple[str, str]
ANY_AGENT: Final = ""
"""What a run waits for when a task's agentSelector matches no Agent: any Agent of its
namespace (no Agent is named ``""``)."""
logger = logging.getLogger(__name__)


def resource_version(body: Body) -> int | None:
    """A resourceVersion as a number, when it is one (etcd revisions are)."""
    try:
        return int((body.get("metadata") or {}).get("resourceVersion") or "")
    except ValueError:
        return None


def is_newer(candidate: Body, current: Body | None) -> bool:
    """Whether ``candidate`` is a newer version of the object than ``current``."""
    if current is None:
        return True
    if (candidate.get("metadata") or {}).get("uid") != (current.get("metadata") or {}).get("uid"):
        return True
    new, old = resource_version(candidate), resource_version(current)
    return new is None or old is None or new > old


@dataclass
class RunMemory:
    """The shell's memory of one Workflow object (one uid).

    ``body`` is the newest version seen without its spec, which is kept only as
    parsed (once per generation): a thousand live runs would otherwise hold every
    spec twice.
    """

    body: Body
    finished: dict[str, ObservedJob] = field(default_factory=dict)
    """Jobs that finished or are gone, as the core sees them; terminal, never read again."""
    listed: dict[str, JobRecord] = field(default_factory=dict)
    """The run's Jobs as last listed from the API (the resync), or read one by one."""
    listed_at: float = field(default_factory=time.monotonic)
    """When the run's Jobs were last listed; at first sight kopf's index is fresh."""
    created: dict[str, tuple[JobRef, float]] = field(default_factory=dict)
    """Jobs this operator created, not yet on the watch, with the monotonic time of creation."""
    problems: dict[str, PodProblem] = field(default_factory=dict)
    first_seen_unschedulable: dict[str, datetime] = field(default_factory=dict)
    refusals: list[Refusal] = field(default_factory=list)
    waiting: dict[str, tuple[float, str]] = field(default_factory=dict)
    """Ready tasks the last decision held back: since when (monotonic) and by what."""
    recorded: WorkflowSpec | None = None
    """The spec the run was prepared with, once this process prepared it or read it back."""
    granted: frozenset[str] = frozenset()
    """Cache entries this process saw the run's Role grant (so it is read only for new ones)."""
    parsed_spec: tuple[int, WorkflowSpec | InvalidSpec] | None = None
    """The spec parsed, with the generation it was parsed at."""
    parsed_status: tuple[str | None, WorkflowStatus] | None = None
    """The status parsed (or written by us), with the resourceVersion it is of."""

    @classmethod
    def of(cls, body: Body) -> RunMemory:
        memory = cls(body={})
        memory.keep(body)
        return memory

    def keep(self, body: Body) -> None:
        """Remember ``body``: its spec parsed if its generation is new, the rest as it is."""
        generation = int(body["metadata"].get("generation") or 1)
        if self.parsed_spec is None or self.parsed_spec[0] != generation:
            spec: WorkflowSpec | InvalidSpec
            try:
                spec = WorkflowSpec.model_validate(body.get("spec") or {})
            except ValidationError as error:
                spec = InvalidSpec(schema_messages(error))
            self.parsed_spec = (generation, spec)
        self.body = {key: value for key, value in body.items() if key != "spec"}

    def spec(self) -> WorkflowSpec | InvalidSpec:
        """The spec, as parsed for the newest generation seen; one the models refuse says why."""
        assert self.parsed_spec is not None  # keep() parses it
        return self.parsed_spec[1]

    def status(self) -> WorkflowStatus:
        """The status, parsed once per version; one that does not parse counts as empty."""
        version = self.body["metadata"].get("resourceVersion")
        if self.parsed_status is None or self.parsed_status[0] != version:
            try:
                status = WorkflowStatus.model_validate(self.body.get("status") or {})
            except ValidationError as error:
                logger.warning(
                    "%s/%s: status unreadable, reconciling from scratch: %s",
                    self.body["metadata"]["namespace"],
                    self.body["metadata"]["name"],
                    "; ".join(schema_messages(error)),
                )
                status = WorkflowStatus()
            self.parsed_status = (version, status)
        return self.parsed_status[1]

    def written(self, body: Body, status: WorkflowStatus, wire: Mapping[str, Any]) -> None:
        """The answer to our status write: kept, with ``status`` as its parse if it matches."""
        self.keep(body)
        if body.get("status") == wire:
            self.parsed_status = (body["metadata"].get("resourceVersion"), status)

    @property
    def uid(self) -> str:
        return str(self.body["metadata"]["uid"])

    def job_deleted(self, record: JobRecord) -> None:
        """A Job of this run was deleted: it is gone, unless it finished first."""
        if record.finished:
            self.listed[record.name] = record  # its pods may still say how it went
        else:
            self.finished.setdefault(
                record.name, gone_job(record.name, record.task, record.attempt)
            )


class Runs:
    """Every live run's memory, and which runs wait for which Agents (or any Agent)."""

    def __init__(self) -> None:
        self._runs: dict[WorkflowKey, RunMemory] = {}
        self._waiting: dict[tuple[str, str], set[WorkflowKey]] = defaultdict(set)
        self._waits_of: dict[WorkflowKey, set[tuple[str, str]]] = defaultdict(set)

    def get(self, key: WorkflowKey) -> RunMemory | None:
        return self._runs.get(key)

    def seen(self, key: WorkflowKey, body: Body) -> bool:
        """Keep ``body`` if it is newer than what is known; whether it was."""
        memory = self._runs.get(key)
        if memory is not None and not is_newer(body, memory.body):
            return False
        if memory is None or memory.uid != str(body["metadata"]["uid"]):
            self._runs[key] = RunMemory.of(body)
        else:
            memory.keep(body)
        return True

    def forget(self, key: WorkflowKey, uid: str | None = None) -> bool:
        """Drop a run's memory (only if it is of ``uid``, when given); whether it was."""
        memory = self._runs.get(key)
        if memory is None or (uid is not None and memory.uid != uid):
            return False
        del self._runs[key]
        self.wait_for_agents(key, ())
        return True

    def wait_for_agents(
        self, key: WorkflowKey, agents: Iterable[str], any_agent: bool = False
    ) -> None:
        """Note that ``key`` waits for these Agents of its namespace (and no others), or for
        any of them to change (``any_agent``: a selector waits for a match)."""
        for wanted in self._waits_of.pop(key, set()):
            self._waiting[wanted].discard(key)
            if not self._waiting[wanted]:
                del self._waiting[wanted]
        for agent in [*agents, ANY_AGENT] if any_agent else agents:
            self._waiting[(key[0], agent)].add(key)
            self._waits_of[key].add((key[0], agent))

    def waiting(self) -> list[tuple[str, list[str]]]:
        """Each live run's namespace and the reasons its ready tasks wait, for a scrape.

        Called from the metrics endpoint's thread: every copy is made in one step.
        """
        return [
            (key[0], [reason for _, reason in list(memory.waiting.values())])
            for key, memory in list(self._runs.items())
        ]

    def in_namespace(self, namespace: str) -> list[WorkflowKey]:
        """The live runs of a namespace (its Tenant changed: they may start, or not)."""
        return [key for key in self._runs if key[0] == namespace]

    def created_in(self, namespace: str) -> dict[WorkflowKey, set[str]]:
        """The Jobs the live runs of a namespace created that the watch has not shown yet."""
        return {
            key: set(memory.created)
            for key, memory in self._runs.items()
            if key[0] == namespace and memory.created
        }

    def created_agents_in(self, namespace: str) -> dict[WorkflowKey, dict[str, str | None]]:
        """The same Jobs, each with the Agent its attempt runs on."""
        return {
            key: {name: ref.agent for name, (ref, _) in memory.created.items()}
            for key, memory in self._runs.items()
            if key[0] == namespace and memory.created
        }

    def naming_template(self, namespace: str, template: str) -> list[WorkflowKey]:
        """The live runs of a namespace that name this WorkflowTemplate and have not started."""
        return [
            key
            for key, memory in self._runs.items()
            if key[0] == namespace
            and memory.status().spec_hash is None
            and isinstance(spec := memory.spec(), WorkflowSpec)
            and spec.workflow_template_ref is not None
            and spec.workflow_template_ref.name == template
        ]

    def waiting_for(self, namespace: str, agent: str) -> set[WorkflowKey]:
        """The runs a change of this Agent may let go on: those waiting for it, or for any."""
        named = self._waiting.get((namespace, agent), set())
        return named | self._waiting.get((namespace, ANY_AGENT), set())
