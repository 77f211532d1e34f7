"""Why a task attempt failed, in one line a person can act on.

Jobs fail for different reasons that look alike from the outside: the task
gave up (its termination message says why), its deadline passed, it was
refused for good, or it exited cleanly without writing its output. The
message names which, so ``kubectl get wf -o yaml`` explains itself.
"""

from __future__ import annotations

from troupe_operator.workflow.observation import ObservedJob


def attempt_failure(job: ObservedJob, timeout_seconds: int | None) -> str:
    """The failure of one attempt, without the attempt number."""
    if job.deadline_exceeded:
        limit = f" after {timeout_seconds}s" if timeout_seconds else ""
        return f"timed out{limit} (timeoutSeconds, the Job's activeDeadlineSeconds)"
    reason = job.message.strip() if job.message else "the task's pod failed without a message"
    return f"{reason} (permanent, not retried)" if job.permanent else reason


MISSING_OUTPUT = "the task finished but its output is missing"
