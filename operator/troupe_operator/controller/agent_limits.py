"""An Agent's ``model.maxConcurrency`` held across all the Workflows of its namespace.

The Workflow core decides one run at a time; an Agent's cap is about every run
of the namespace that uses it, so this shell-side gate tells each reconcile how
many more attempts it may start on each capped Agent (``Observation.agent_slots``),
counted as the Tenant gate counts (``tenant_limits.py``), never from a tally of
its own:

- running attempts of an Agent: the task Jobs not finished that name it (a kopf
  index by namespace and Agent, from the Job's ``troupe.dev/agent`` annotation),
  plus the Jobs this operator created that the watch has not shown yet, plus the
  ones a reconcile is creating right now (reserved from its decision until its
  creates return, so two concurrent reconciles never both take the last slot);
- the cap: ``maxConcurrency``, or what ``AgentConcurrency`` has made of it when
  the Agent adapts (``caps``).

The free slots are shared by ``tenants.slots.share`` (by ``spec.priority``, aged
while a run waits, then fairly). What it keeps in memory only orders the sharing
(who was held back by which Agent, since when, at what priority); the runs it
gives a slot to are woken when an attempt of that Agent ends. It refuses nothing
and never calls the API: an Agent without maxConcurrency has no entry.
"""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import kopf

from troupe_operator.controller import observe
from troupe_operator.controller.runs import WorkflowKey
from troupe_operator.tenants.slots import Claim, share
from troupe_operator.workflow import LABEL_WORKFLOW, CreateTask, Decision

ACTIVE_AGENT_JOBS_INDEX: Final = "active_agent_jobs"
"""kopf index: (namespace, Agent) to the (workflow, Job) of each task Job not finished on it."""

AgentKey = tuple[str, str]
"""(namespace, Agent name)."""


@dataclass
class _Held:
    count: int
    since: float


def starts_by_agent(decision: Decision) -> Counter[str]:
    """The attempts a decision starts, by Agent."""
    return Counter(action.task_input.agent_name for action in decision.of_type(CreateTask))


@dataclass
class AgentGate:
    """How many attempts each run may start on each capped Agent, and whom to wake.

    ``created`` gives, for a namespace, the Jobs each run created that the watch has
    not shown yet, with their Agent (``Runs.created_agents_in``); ``caps`` the cap of
    an Agent now (None: uncapped); ``wake`` puts a run on the work queue.
    """

    active: Mapping[AgentKey, Collection[tuple[str, str]]]
    created: Callable[[str], Mapping[WorkflowKey, Mapping[str, str | None]]]
    caps: Callable[[str, str], int | None]
    wake: Callable[[WorkflowKey], None]
    clock: Callable[[], float] = time.monotonic
    _held: dict[WorkflowKey, dict[str, _Held]] = field(default_factory=dict)
    _reserved: dict[WorkflowKey, Counter[str]] = field(default_factory=dict)
    _priorities: dict[WorkflowKey, int] = field(default_factory=dict)

    def slots(self, key: WorkflowKey, agents: Iterable[str], priority: int = 0) -> dict[str, int]:
        """How many attempts the run may start now on each of ``agents`` that is capped."""
        self._priorities[key] = priority
        namespace, now = key[0], self.clock()
        free: dict[str, int] = {}
        for agent in agents:
            cap = self.caps(namespace, agent)
            if cap is None:
                continue
            claims = self._claims((namespace, agent))
            held = self._held.get(key, {}).get(agent)
            running = claims[key].running if key in claims else 0
            claims[key] = Claim(running, cap, held.since if held else now, priority)
            free[agent] = share(cap, claims, now).get(key, 0)
        return free

    def running(self, namespace: str, agent: str) -> int:
        """The Agent's attempts that may be running now."""
        return sum(self._running((namespace, agent)).values())

    def reserve(self, key: WorkflowKey, starts: Counter[str]) -> None:
        """Count ``starts`` as running until their creates have returned."""
        if starts:
            self._reserved.setdefault(key, Counter()).update(starts)

    def release(self, key: WorkflowKey, starts: Counter[str]) -> None:
        """The creates returned: their Jobs are in the run's memory (or were not made)."""
        left = self._reserved.get(key, Counter())
        left.subtract(starts)
        kept = +left
        if kept:
            self._reserved[key] = kept
        else:
            self._reserved.pop(key, None)

    def decided(self, key: WorkflowKey, decision: Decision) -> None:
        """Remember which Agents held the run back, then wake whoever may use a free slot."""
        before = self._held.get(key, {})
        now = self.clock()
        held = {
            agent: _Held(count, before[agent].since if agent in before else now)
            for agent, count in decision.held_by_agent.items()
        }
        if held:
            self._held[key] = held
        else:
            self._held.pop(key, None)
        self.slots_freed(key[0], besides=key)

    def slots_freed(self, namespace: str, besides: WorkflowKey | None = None) -> None:
        """An attempt ended in ``namespace`` (or a run took fewer slots than it had)."""
        waited_on = {
            agent for key, held in self._held.items() if key[0] == namespace for agent in held
        }
        for agent in sorted(waited_on):
            cap = self.caps(namespace, agent)
            claims = self._claims((namespace, agent))
            if cap is None:
                given: Iterable[WorkflowKey] = [k for k, c in claims.items() if c.wants]
            else:
                given = share(cap, claims, self.clock())
            for key in given:
                if key != besides:
                    self.wake(key)

    def forget(self, key: WorkflowKey) -> None:
        self._held.pop(key, None)
        self._reserved.pop(key, None)
        self._priorities.pop(key, None)

    # -- counting ---------------------------------------------------------------

    def _running(self, agent: AgentKey) -> dict[WorkflowKey, int]:
        """Each run's attempts on the Agent that may be running."""
        namespace, name = agent
        jobs: dict[WorkflowKey, set[str]] = defaultdict(set)
        for workflow, job in self.active.get(agent, ()):
            jobs[(namespace, workflow)].add(job)
        for key, created in self.created(namespace).items():
            jobs[key].update(job for job, on in created.items() if on == name)
        counts = {key: len(names) for key, names in jobs.items()}
        for key, reserved in self._reserved.items():
            if key[0] == namespace and reserved[name]:
                counts[key] = counts.get(key, 0) + reserved[name]
        return counts

    def _claims(self, agent: AgentKey) -> dict[WorkflowKey, Claim]:
        """Every run that runs attempts on the Agent or waits for one of its slots."""
        running = self._running(agent)
        claims = {key: Claim(count, 0, math.inf) for key, count in running.items()}
        for key, held in self._held.items():
            waiting = held.get(agent[1])
            if key[0] == agent[0] and waiting is not None:
                priority = self._priorities.get(key, 0)
                claims[key] = Claim(running.get(key, 0), waiting.count, waiting.since, priority)
        return claims


def register_index(registry: kopf.OperatorRegistry) -> None:
    @observe.task_job_index(registry, ACTIVE_AGENT_JOBS_INDEX)
    async def index_active_agent_job(
        body: kopf.Body, namespace: str | None, labels: kopf.Labels, **_: Any
    ) -> Any:
        record = observe.job_record(body)
        if record is None or record.finished or record.agent is None:
            return {}
        return {(namespace, record.agent): (labels[LABEL_WORKFLOW], record.name)}
