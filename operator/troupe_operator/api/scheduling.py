"""The shapes of scheduling: a Workflow's and a task's priority, and why a ready task waits.

A priority is a small bounded integer, higher first, 0 by default: the bounds keep the
aging rule across Workflows (``troupe_operator.tenants.slots``) finite, so no run waits
forever behind higher priorities. Which attempt starts first is decided by the reconcile
core (``troupe_operator.workflow.priorities``); this module only says what is written.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final

from pydantic import Field

from troupe_operator.api.common import ApiModel

MIN_PRIORITY: Final = -1000
MAX_PRIORITY: Final = 1000

Priority = Annotated[int, Field(ge=MIN_PRIORITY, le=MAX_PRIORITY)]
"""Higher starts first, from ``MIN_PRIORITY`` to ``MAX_PRIORITY``."""


class TaskWaiting(ApiModel):
    """Why a task that is ready to start has not started, since when, and at what priority."""

    reason: str = Field(
        max_length=64,
        description=(
            "What holds it back: Parallelism, AgentNotFound, NoMatchingAgent, "
            "TenantConcurrencyLimit, TokenBudgetExceeded, NamespaceNotTenanted or Suspended."
        ),
    )
    since: datetime = Field(
        description="When it was first held back; among equal priorities, the longest waiting "
        "starts first."
    )
    priority: Priority = Field(
        description="Its effective priority in its Workflow: its own, else the Workflow's."
    )
