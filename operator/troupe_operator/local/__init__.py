"""``troupe run``: Workflows on this machine, driven by the operator's own reconcile core.

Each task attempt runs as a local process of the agent runtime's task mode
instead of a Job; everything else (DAG order, retries, timeouts, failFast,
parallelism, status) is decided by ``troupe_operator.workflow.reconcile``,
so a run here behaves as it would in a cluster.
"""

from troupe_operator.local.plan import RunInputError, RunPlan, plan_run
from troupe_operator.local.runner import DEFAULT_TASK_COMMAND, run_plan

__all__ = ["DEFAULT_TASK_COMMAND", "RunInputError", "RunPlan", "plan_run", "run_plan"]
