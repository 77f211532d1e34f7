"""Which Agent runs an attempt, and the record of which one did.

A task names its Agent (``agent``) or describes it (``agentSelector``:
skills and labels). The Agent of an attempt is chosen when the attempt
starts, and never again: its Job carries the Agent's spec, and status records
its name in ``tasks.T.agents`` (one per attempt, in order), so a restarted
operator never chooses twice.

- Attempt 1 runs on ``agent``, or on the best Agent the selector matches.
- Attempt N >= 2 runs on ``fallbackAgents[N-2]`` (the last one beyond the
  list). Only a retryable failure is ever retried (a permanent one fails the
  task), so every such attempt follows one. Without fallbacks it runs as
  attempt 1 would, choosing again with a selector.

**The score.** An Agent matches when its ``spec.skills`` lists every skill
asked for and its labels hold every ``matchLabels`` pair (exact, as
written). Among those, the best has the highest success rate of its recent
model calls, as its supervisor pod reports them in ``status.calls``
(``requests`` and ``errors``), in whole percent; then the lowest median
latency (``latencyP50Seconds``; none known ranks last); then the name, so the
choice is stable. The score is bounded: a rate between 0 and 1 and a latency
of at least 0. A record counts only with at least ``RECORD_MIN_CALLS`` calls
written within ``RECORD_MAX_AGE_SECONDS``; an Agent without one (the usual
case: tasks-only Agents have no pods) counts as ``UNRECORDED_SUCCESS_RATE``
with no latency: after every Agent with a good record (90 % or better),
before every Agent with a poor one.

This module refuses to look further: not at the Agent's phase, its model's
reachability or its load, and it never reads the cluster (the shells hand it
every Agent of the namespace with its labels and statistics).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from troupe_operator.api import AgentCallStats, AgentSelector, AgentSpec, TaskSpec, TaskStatus
from troupe_operator.workflow.observation import AgentProfile, ObservedJob
from troupe_operator.workflow.summary import brief
from troupe_operator.workflow.tasks import FINISHED

AGENT_NOT_FOUND: Final = "AgentNotFound"
NO_MATCHING_AGENT: Final = "NoMatchingAgent"
RECORD_MIN_CALLS: Final = 5
"""Fewer calls than this say too little about an Agent to rank it by them."""
RECORD_MAX_AGE_SECONDS: Final = 3600
"""Call statistics written longer ago than this are no longer recent: they do not count."""
UNRECORDED_SUCCESS_RATE: Final = 0.9
"""The success rate an Agent without a record is ranked at."""
RATE_STEPS: Final = 100
"""Success rates compare in whole percent, so that latency decides between near equals."""

NO_PROFILE: Final = AgentProfile()


@dataclass(frozen=True)
class Chosen:
    """The Agent an attempt runs on."""

    name: str
    spec: AgentSpec


@dataclass(frozen=True)
class Missing:
    """The attempt's named Agent (its own, or a fallback) does not exist."""

    name: str


@dataclass(frozen=True)
class Unmatched:
    """No Agent of the namespace matches the task's selector."""

    selector: AgentSelector


Choice = Chosen | Missing | Unmatched


def agent_for(
    task: TaskSpec,
    attempt: int,
    agents: Mapping[str, AgentSpec],
    profiles: Mapping[str, AgentProfile],
    now: datetime,
) -> Choice:
    """The Agent ``attempt`` of ``task`` runs on, chosen now."""
    name = fallback_agent(task, attempt) or task.agent
    if name is not None:
        spec = agents.get(name)
        return Missing(name) if spec is None else Chosen(name, spec)
    if task.agent_selector is None:
        raise ValueError(f"task '{task.name}' has neither agent nor agentSelector")
    ranked = rank(task.agent_selector, agents, profiles, now)
    return Chosen(ranked[0], agents[ranked[0]]) if ranked else Unmatched(task.agent_selector)


def fallback_agent(task: TaskSpec, attempt: int) -> str | None:
    """The fallback Agent of a retry (attempt >= 2), if the task lists any."""
    fallbacks = task.fallback_agents
    if attempt < 2 or not fallbacks:
        return None
    return fallbacks[min(attempt - 2, len(fallbacks) - 1)]


def possible_agents(
    task: TaskSpec, agents: Mapping[str, AgentSpec], profiles: Mapping[str, AgentProfile]
) -> set[str]:
    """Every Agent some unit of ``task`` may run on: those it names (its own, a supervisor's
    and members, candidates' and a judge's), its fallbacks, and each one of ``agents`` its
    selector matches (a shell that must prepare them all, ``troupe run``)."""
    named = set(task.named_agents())
    if task.agent_selector is not None:
        named.update(matching(task.agent_selector, agents, profiles))
    return named | set(task.fallback_agents)


def matching(
    selector: AgentSelector,
    agents: Mapping[str, AgentSpec],
    profiles: Mapping[str, AgentProfile],
) -> list[str]:
    """The Agents that have every skill and every label the selector asks for."""
    wanted = set(selector.skills)
    return [
        name
        for name, spec in agents.items()
        if wanted <= set(spec.skills)
        and all(
            profiles.get(name, NO_PROFILE).labels.get(key) == value
            for key, value in selector.match_labels.items()
        )
    ]


def rank(
    selector: AgentSelector,
    agents: Mapping[str, AgentSpec],
    profiles: Mapping[str, AgentProfile],
    now: datetime,
) -> list[str]:
    """The Agents that match, best first (see the module's docstring for the score)."""

    def key(name: str) -> tuple[float, float, str]:
        rate, latency = score(profiles.get(name, NO_PROFILE).calls, now)
        return -rate, latency, name

    return sorted(matching(selector, agents, profiles), key=key)


def score(calls: AgentCallStats | None, now: datetime) -> tuple[float, float]:
    """An Agent's success rate (0 to 1, in whole percent) and median latency (inf: unknown)."""
    if (
        calls is None
        or calls.requests < RECORD_MIN_CALLS
        or (now - calls.updated_at).total_seconds() > RECORD_MAX_AGE_SECONDS
    ):
        return UNRECORDED_SUCCESS_RATE, math.inf
    succeeded = max(0, calls.requests - calls.errors)
    rate = math.floor(succeeded * RATE_STEPS / calls.requests) / RATE_STEPS
    latency = calls.latency_p50_seconds
    return rate, math.inf if latency is None else latency


def recorded(agents: Sequence[str] | None, attempt: int, name: str) -> list[str]:
    """``agents`` with ``name`` recorded as the Agent of ``attempt``.

    Only the next attempt in line is recorded, and only once: an attempt's
    Agent never changes, and the list stays one entry per attempt, in order.
    """
    known = agents or []
    return [*known, name] if len(known) == attempt - 1 else list(known)


def with_job_agents(
    previous: TaskStatus, task: TaskStatus, jobs: Mapping[int, ObservedJob]
) -> TaskStatus:
    """``task`` (settled from ``previous``) with the Agents its Jobs name for attempts status
    does not record yet.

    Status records an attempt's Agent when the attempt starts; should that
    status write have been lost (a restart between creating the Job and
    writing status), the Job still says. A task finished before is left as it
    is: its record is final (and may have been slimmed to its last Agent).
    """
    if previous.phase in FINISHED:
        return task
    known = task.agents or []
    agents = list(known)
    while (job := jobs.get(len(agents) + 1)) is not None and job.agent:
        agents.append(job.agent)
    if len(agents) == len(known):
        return task
    return task.model_copy(update={"agents": agents})


def ran_on(task: TaskStatus, attempt: int) -> str | None:
    """The Agent status records for ``attempt`` of a task, if it records one."""
    agents = task.agents or []
    return agents[attempt - 1] if 0 < attempt <= len(agents) else None


@dataclass
class AgentWaits:
    """The ready tasks of one decision that wait for an Agent, and what the run says of it."""

    missing: dict[str, str] = field(default_factory=dict)
    """Task -> the named Agent it waits for."""
    unmatched: dict[str, AgentSelector] = field(default_factory=dict)
    """Task -> the selector no Agent matches."""

    def wait(self, task: str, choice: Missing | Unmatched) -> str:
        """Note that ``task`` waits; the reason (AgentNotFound or NoMatchingAgent)."""
        if isinstance(choice, Missing):
            self.missing[task] = choice.name
            return AGENT_NOT_FOUND
        self.unmatched[task] = choice.selector
        return NO_MATCHING_AGENT

    @property
    def named(self) -> frozenset[str]:
        """The missing Agents, by name: applying one of them wakes the run."""
        return frozenset(self.missing.values())

    @property
    def any_agent(self) -> bool:
        """Whether a selector waits: any Agent applied or changed may match it."""
        return bool(self.unmatched)

    def verdict(self, namespace: str) -> tuple[str, str] | None:
        """The reason and message of a run held by these waits (None: none waits)."""
        parts = []
        if self.missing:
            names = ", ".join(f"'{agent}'" for agent in sorted(set(self.missing.values())))
            parts.append(f"waiting for Agent {names} in namespace '{namespace}'")
        if self.unmatched:
            wanted = sorted({selector.describe() for selector in self.unmatched.values()})
            parts.append(
                f"waiting for an Agent with {' or '.join(wanted)} in namespace '{namespace}'"
            )
        if not parts:
            return None
        reason = AGENT_NOT_FOUND if self.missing else NO_MATCHING_AGENT
        count = len(self.missing) + len(self.unmatched)
        return reason, brief(f"{'; '.join(parts)} (needed by {count} ready task(s))")
