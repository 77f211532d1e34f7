"""What runs in a Tenant's namespaces, counted from what the cluster holds.

Read-only: the counts are reported in the Tenant's status; what holds a task
back is the Workflow controller's gate (``controller.tenant_limits``), which
counts the same way from its indexes. A task Job is running until the Job controller marks it
``Complete`` or ``Failed`` (a Job whose pod waits for its image counts: it
holds a slot). A Workflow counts in its phase, one not started yet as
Pending; its tokens are its ``status.usage.totalTokens``. Malformed fields
count as nothing rather than failing the count.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from troupe_operator.api import WorkflowCounts, WorkflowPhase

Body = Mapping[str, Any]


def job_running(job: Body) -> bool:
    for condition in (job.get("status") or {}).get("conditions") or ():
        if condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True":
            return False
    return True


def running_tasks(jobs: Iterable[Body]) -> int:
    return sum(1 for job in jobs if job_running(job))


def _phase(workflow: Body) -> WorkflowPhase:
    try:
        return WorkflowPhase(str((workflow.get("status") or {}).get("phase")))
    except ValueError:
        return WorkflowPhase.PENDING


def workflow_counts(workflows: Iterable[Body]) -> WorkflowCounts:
    counts = {phase: 0 for phase in WorkflowPhase}
    for workflow in workflows:
        counts[_phase(workflow)] += 1
    return WorkflowCounts.model_validate(
        {phase.value.lower(): count for phase, count in counts.items()}
    )


def tokens(workflows: Iterable[Body]) -> int:
    total = 0
    for workflow in workflows:
        usage = (workflow.get("status") or {}).get("usage") or {}
        used = usage.get("totalTokens") if isinstance(usage, Mapping) else None
        if isinstance(used, int) and not isinstance(used, bool) and used > 0:
            total += used
    return total
