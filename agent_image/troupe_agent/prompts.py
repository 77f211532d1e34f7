"""The words the agent graph sends to the model besides the user's task.

Kept apart from the graph so the offline scripted model can recognise a
critique request without importing LangGraph, and so the wording is in one place.
The material section carries only what the caller passes as material: a task
passes the upstream outputs its template does not place, so no output is
sent twice in one call.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

APPROVAL_WORD: Final = "APPROVED"

CRITIQUE_INSTRUCTION: Final = (
    "Critique the draft answer below against the task. If it fully meets the task, "
    f"reply with the single word {APPROVAL_WORD} on the first line. Otherwise list each "
    "concrete problem and how to fix it."
)

REVISE_INSTRUCTION: Final = (
    "Revise your answer to fix every problem in this critique. Reply with the complete "
    "revised answer only."
)


@dataclass(frozen=True)
class TaskPrompt:
    """What a workflow task asks: its rendered prompt, and the material sent besides it."""

    text: str
    material: Mapping[str, str] = field(default_factory=dict)
    """Upstream outputs, by task name, that the prompt does not already contain."""


def task_message(prompt: str, material: Mapping[str, str]) -> str:
    """The task as the model sees it: the material it builds on, then the prompt."""
    if not material:
        return prompt
    sections = "\n\n".join(f"### {name}\n{text}" for name, text in material.items())
    return f"Material from earlier steps:\n\n{sections}\n\n## Task\n{prompt}"


def critique_message(task: str, draft: str) -> str:
    return f"{CRITIQUE_INSTRUCTION}\n\n## Task\n{task}\n\n## Draft answer\n{draft}"


def revise_message(critique: str) -> str:
    return f"{REVISE_INSTRUCTION}\n\n## Critique\n{critique}"


def is_approval(critique: str) -> bool:
    """Whether a critique approves the draft: it starts with the approval word."""
    return critique.lstrip(" *#>`\n").upper().startswith(APPROVAL_WORD)
