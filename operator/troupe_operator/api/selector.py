"""``agentSelector``: which Agents may run a task, by their skills and labels.

A task names its Agent (``agent``) or asks for one by what it must be able
to do (``agentSelector``); the reconcile core picks among the Agents that
qualify (``troupe_operator.workflow.selection``). This module only declares
the shape and its bounds: skills and labels compare exactly, as written, and
nothing here knows any Agent.
"""

from __future__ import annotations

import re
from typing import Annotated, Final

from pydantic import AfterValidator, Field

from troupe_operator.api.common import DNS_SUBDOMAIN_PATTERN, ApiModel

MAX_SELECTOR_SKILLS: Final = 16
MAX_SELECTOR_LABELS: Final = 16
MAX_SKILL_CHARS: Final = 100
MAX_FALLBACK_AGENTS: Final = 5
LABEL_NAME_PATTERN: Final = r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$"
"""A label value, and the name part of a label key (at most 63 characters each)."""
LABEL_NAME_CHARS: Final = 63
LABEL_PREFIX_CHARS: Final = 253

Skill = Annotated[str, Field(min_length=1, max_length=MAX_SKILL_CHARS, pattern=r"\S")]
LabelValue = Annotated[str, Field(max_length=LABEL_NAME_CHARS, pattern=LABEL_NAME_PATTERN)]


def label_key_problem(key: str) -> str | None:
    """Why ``key`` is not a Kubernetes label key (``[prefix/]name``), or None."""
    prefix, slash, name = key.rpartition("/")
    if not name or len(name) > LABEL_NAME_CHARS or not re.fullmatch(LABEL_NAME_PATTERN, name):
        return f"label key {key[:80]!r}: its name must be 1-63 letters, digits, '-', '_' or '.'"
    if slash and (
        len(prefix) > LABEL_PREFIX_CHARS or not re.fullmatch(DNS_SUBDOMAIN_PATTERN, prefix)
    ):
        return f"label key {key[:80]!r}: its prefix must be a DNS subdomain"
    return None


def _check_label_keys(labels: dict[str, str]) -> dict[str, str]:
    for key in labels:
        problem = label_key_problem(key)
        if problem is not None:
            raise ValueError(problem)
    return labels


class AgentSelector(ApiModel):
    """The Agents a task may run on: those with every skill and every label given."""

    skills: list[Skill] = Field(
        default_factory=list,
        max_length=MAX_SELECTOR_SKILLS,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="Skills the Agent must list in spec.skills, every one (exact match).",
    )
    match_labels: Annotated[dict[str, LabelValue], AfterValidator(_check_label_keys)] = Field(
        default_factory=dict,
        max_length=MAX_SELECTOR_LABELS,
        description="Labels the Agent must carry, every one with this value.",
    )

    def describe(self) -> str:
        """The selector in words, for messages: ``skills [x, y], labels {tier=gold}``."""
        parts = []
        if self.skills:
            parts.append("skills [" + ", ".join(self.skills) + "]")
        if self.match_labels:
            labels = ", ".join(f"{k}={v}" for k, v in sorted(self.match_labels.items()))
            parts.append("labels {" + labels + "}")
        return " and ".join(parts) or "no constraint"
