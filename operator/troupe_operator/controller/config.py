"""How an operator installation is set up, read once from its environment.

The Helm chart sets these variables; tests build the dataclass directly.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass


@dataclass(frozen=True)
class OperatorConfig:
    """Settings of one operator installation."""

    agent_image: str = "ghcr.io/troupe-dev/troupe-agent:0.1.0"
    """Image of task pods when an Agent names none."""

    task_command: tuple[str, ...] = ("troupe-agent",)
    """Command of the task container; the agent image's entry point."""

    task_service_account: str = "troupe-task"
    """ServiceAccount task pods run as; may only write ConfigMaps in its namespace."""

    resync_seconds: float = 30.0
    """How often every Workflow is reconciled even without an event (missed-event net)."""

    @classmethod
    def from_env(cls) -> OperatorConfig:
        defaults = cls()
        return cls(
            agent_image=os.environ.get("TROUPE_AGENT_IMAGE", defaults.agent_image),
            task_command=tuple(
                shlex.split(os.environ.get("TROUPE_TASK_COMMAND", "")) or defaults.task_command
            ),
            task_service_account=os.environ.get(
                "TROUPE_TASK_SERVICE_ACCOUNT", defaults.task_service_account
            ),
            resync_seconds=float(os.environ.get("TROUPE_RESYNC_SECONDS", defaults.resync_seconds)),
        )
