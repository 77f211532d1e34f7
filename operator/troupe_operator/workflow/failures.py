"""Why a task attempt failed, in one line a person can act on, and whether to try again.

Jobs fail for different reasons that look alike from the outside: the task
gave up (its report says why), its deadline passed, it was refused for good,
its Job was deleted under it, or its pod could not even start. The message
names which, so ``kubectl get wf -o yaml`` explains itself.

A pod that cannot start is never waited on forever, as a kubelet would: a
missing Secret, key or ConfigMap, or an image name that cannot be valid,
ends the attempt at once for good (no retry can cure it until someone acts);
an image that cannot be pulled ends it at once, and another attempt may
succeed; a pod the scheduler cannot place ends it after
``UNSCHEDULABLE_LIMIT_SECONDS``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from troupe_operator.workflow.observation import ObservedJob, PodProblem

UNSCHEDULABLE_LIMIT_SECONDS: Final = 300
"""How long a task's pod may stay unschedulable before its attempt fails."""

CONFIGURATION_ERRORS: Final = frozenset(
    {"CreateContainerConfigError", "CreateContainerError", "InvalidImageName"}
)
PULL_ERRORS: Final = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "RegistryUnavailable"}
)
UNSCHEDULABLE: Final = "Unschedulable"

JOB_DELETED: Final = "its Job was deleted before it finished (not by Troupe)"


@dataclass(frozen=True)
class StartFailure:
    """A pod problem that ends its attempt now."""

    message: str
    permanent: bool


def attempt_failure(job: ObservedJob, timeout_seconds: int | None) -> str:
    """The failure of one finished attempt, without the attempt number."""
    if job.deadline_exceeded:
        limit = f" after {timeout_seconds}s" if timeout_seconds else ""
        return f"timed out{limit} (timeoutSeconds, the Job's activeDeadlineSeconds)"
    told = job.report.message if job.report is not None else None
    reason = (told or job.message or "").strip() or "the task's pod failed without a message"
    return f"{reason} (permanent, not retried)" if job.permanent else reason


def start_failure(problem: PodProblem, now: datetime) -> StartFailure | None:
    """Whether ``problem`` ends its attempt now, and how; None to let the pod keep trying."""
    detail = f"{problem.message} ({problem.reason})" if problem.message else problem.reason
    if problem.reason in CONFIGURATION_ERRORS:
        return StartFailure(f"its pod cannot start: {detail} (permanent, not retried)", True)
    if problem.reason in PULL_ERRORS:
        return StartFailure(f"its pod cannot start: {detail}", False)
    if problem.reason == UNSCHEDULABLE and problem.since is not None:
        waited = (now - problem.since).total_seconds()
        if waited >= UNSCHEDULABLE_LIMIT_SECONDS:
            return StartFailure(
                f"its pod was unschedulable for more than {UNSCHEDULABLE_LIMIT_SECONDS}s: {detail}",
                False,
            )
    return None
