"""Holding back attempts whose Agent runs as many as its ``model.maxConcurrency`` allows.

The cap is about all the Workflows of a namespace at once, so the shell counts
and shares it (``Observation.agent_slots``: how many more attempts of each
capped Agent this run may start now); the core only takes from that, in its
order of precedence, and says what it held back. An Agent missing from
``agent_slots`` has no cap here. It never counts running Jobs itself and never
decides who else may start.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from troupe_operator.api import AgentSpec

AGENT_CONCURRENCY_LIMIT: Final = "AgentConcurrencyLimit"


@dataclass
class AgentSlots:
    """One decision's takings from each capped Agent's free slots."""

    free: Mapping[str, int]
    taken: Counter[str] = field(default_factory=Counter)
    held: Counter[str] = field(default_factory=Counter)
    """Attempts held back, by Agent."""

    def take(self, agent: str) -> bool:
        """Whether an attempt on ``agent`` may start now (then it counts as taken)."""
        free = self.free.get(agent)
        if free is not None and self.taken[agent] >= free:
            self.held[agent] += 1
            return False
        self.taken[agent] += 1
        return True

    def message(self, agents: Mapping[str, AgentSpec]) -> str | None:
        """Why ready attempts wait for their Agents, naming each cap (None: none did).

        No counts that change while it waits: a woken run that gets no slot writes nothing.
        """
        if not self.held:
            return None
        caps = ", ".join(f"{name} at most {_cap(agents.get(name))}" for name in sorted(self.held))
        return (
            f"ready tasks wait for a slot of their Agent ({caps} task attempts at once "
            "across the namespace's Workflows; model.maxConcurrency)"
        )


def _cap(agent: AgentSpec | None) -> str:
    cap = agent.model.max_concurrency if agent else None
    return "?" if cap is None else str(cap)
