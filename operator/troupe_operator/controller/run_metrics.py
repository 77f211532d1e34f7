"""Workflow and task metrics, counted by the shell from the core's decisions and status.

The reconcile core stays pure (no Prometheus in it), so the Workflow
controller's shell counts what the core decided and what status recorded.
The rules, chosen so that each thing is counted once, across retried
reconciles and operator restarts as far as a process-local counter can be:

- **Attempts started** (``troupe_tasks_started_total`` for first attempts,
  ``troupe_tasks_retried_total`` for the later ones), the **queue wait** and
  the **dispatch latency** are counted when this operator's create of the
  attempt's Job succeeds. A Job that already existed (made by an earlier
  process) is not counted again, and a retried reconcile never creates a Job
  twice: its attempt is in the run's memory, or in kopf's index of Jobs.
- **Tasks succeeded and failed**, **task duration**, **tokens** and
  **Workflows finished** are counted from the difference between the status
  the decision was based on and the status it wrote, once that write
  succeeded. Status is the record: a reconcile retried after a failed write
  starts from the same status and counts once; a restarted operator starts
  from what the previous one wrote, so it does not count again what is
  recorded there, and counts an attempt that ended while no operator ran when
  it records it. An increment is lost only if the process dies between the
  write and the increment (and with the process, its counters).
- **Tokens** are the increase of a task's ``usage`` in status per direction:
  the core adds each finished attempt's reported usage exactly once (failed
  attempts' too: the tokens were spent), so each attempt is counted once. The
  ``model`` label is the model the task's latest reporting attempt reported;
  else the task's model in status; else ``unknown``. **Model calls** (all, and the failed ones by
  status: task mode's 429s) are the increase of the task's ``calls`` in
  status, the same way.
- The ``agent`` label is the Agent that ran the attempt counted (the
  attempt started; for tokens and calls, the latest reporting attempt; for
  an ended task, its last attempt), as ``tasks.T.agents`` in status records
  it: with ``agentSelector`` and ``fallbackAgents`` the attempts of one task
  may run on different Agents. A status that does not record it (written by
  an operator before the field) falls back to the task's ``agent``.

A counter series that first appears with a count is invisible to ``rate()``
and ``increase()``, which need a sample before the event. So the series of a
namespace and of an Agent are created at 0 when it is first seen (its
Workflows' first decision, before any of its tasks ends), and those of a
model, 429s included, with its first calls; only the first event of a series
Prometheus could not have seen before (the first attempt started, the first
calls of a model) is lost to ``rate()``.

Queue wait runs from the first decision of this process that found the task
ready but held it back (by parallelism, the Tenant's concurrency limit or
token budget, a missing Agent, no Agent matching its selector, or a namespace
no Tenant owns) to its Job's
creation; an attempt started by the first decision that found it ready waits
``none``, for about one API call. Dispatch latency runs from when the DAG let
the task run (its last dependency's ``finishedAt``, or the Workflow's
creation for a task without dependencies) to its Job's creation, for first
attempts: it includes the watch's delay, the work queue, the reconcile and
any queue wait. Its start is a Kubernetes timestamp (whole seconds), so it
reads up to a second high.

Labels are bounded: namespace, Agent, model, a phase, a direction, a reason;
never a Workflow, task, Job or pod name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Final

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

from troupe_operator.api import (
    ModelCalls,
    TaskPhase,
    TaskSpec,
    TaskStatus,
    TokenUsage,
    WorkflowPhase,
    WorkflowStatus,
)
from troupe_operator.workflow import ObservedJob, parent_of, ran_on

NO_WAIT: Final = "none"
REASONS: Final = {
    "Parallelism": "parallelism",
    "TenantConcurrencyLimit": "tenant_limit",
    "AgentConcurrencyLimit": "agent_limit",
    "TokenBudgetExceeded": "budget",
    "AgentNotFound": "agent_not_found",
    "NoMatchingAgent": "no_matching_agent",
    "NamespaceNotTenanted": "not_tenanted",
    "Suspended": "suspended",
}
"""The core's reasons for holding a ready task back (``Decision.waiting``), as label values."""
UNKNOWN: Final = "unknown"
MODEL_CHARS: Final = 100
ENDED: Final = frozenset({WorkflowPhase.SUCCEEDED, WorkflowPhase.FAILED})
RATE_LIMITED: Final = "429"
DIRECTIONS: Final = ("input", "output")
TASK_ENDED: Final = frozenset({TaskPhase.SUCCEEDED, TaskPhase.FAILED})
WAIT_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800, 3600)
DURATION_BUCKETS: Final = (1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 21600)


def reason_label(reason: str | None) -> str:
    """The ``reason`` label of a wait: the core's reason mapped, ``none`` when not held."""
    return NO_WAIT if reason is None else REASONS.get(reason, UNKNOWN)


class RunMetrics:
    """The series of Workflow runs; one set per registry (tests bring their own)."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        by_agent = ["namespace", "agent"]
        self.started = Counter(
            "troupe_tasks_started_total",
            "Tasks whose first attempt started (its Job created by this operator).",
            by_agent,
            registry=registry,
        )
        self.retried = Counter(
            "troupe_tasks_retried_total",
            "Retry attempts started (attempt 2 and later; each one's Job created).",
            by_agent,
            registry=registry,
        )
        self.succeeded = Counter(
            "troupe_tasks_succeeded_total",
            "Tasks that ended Succeeded (counted when status records it).",
            by_agent,
            registry=registry,
        )
        self.failed = Counter(
            "troupe_tasks_failed_total",
            "Tasks that ended Failed, after their last attempt or a permanent failure.",
            by_agent,
            registry=registry,
        )
        self.duration = Histogram(
            "troupe_task_duration_seconds",
            "Time from a task's first attempt starting to its end (retries and backoff "
            "included), by the phase it ended in (Succeeded, Failed).",
            ["namespace", "agent", "phase"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.dispatch = Histogram(
            "troupe_task_dispatch_latency_seconds",
            "Time from a task's dependencies being done (the Workflow's creation for a task "
            "without dependencies) to its first attempt's Job being created.",
            ["namespace"],
            buckets=WAIT_BUCKETS,
            registry=registry,
        )
        self.queue_wait = Histogram(
            "troupe_task_queue_wait_seconds",
            "Time an attempt waited from the operator finding it ready to its Job being "
            "created, by what held it back last (parallelism, tenant_limit, agent_limit, budget, "
            "agent_not_found, no_matching_agent, not_tenanted, suspended) or none.",
            ["namespace", "reason"],
            buckets=WAIT_BUCKETS,
            registry=registry,
        )
        self.tokens = Counter(
            "troupe_task_tokens_total",
            "LLM tokens task attempts reported, by direction (input, output); each finished "
            "attempt is counted once, when the operator records its usage in status.",
            ["namespace", "agent", "model", "direction"],
            registry=registry,
        )
        self.llm_calls = Counter(
            "troupe_task_llm_calls_total",
            "LLM calls task attempts made, failed ones included (each retry is a call); "
            "counted when the operator records the attempt's report in status.",
            ["namespace", "agent", "model"],
            registry=registry,
        )
        self.llm_errors = Counter(
            "troupe_task_llm_errors_total",
            "LLM calls of task attempts that failed, by status (HTTP code, timeout, "
            "connection, malformed, error, other); counted like troupe_task_llm_calls_total.",
            ["namespace", "agent", "model", "status"],
            registry=registry,
        )
        self.workflows_finished = Counter(
            "troupe_workflows_finished_total",
            "Workflow runs that ended, by phase (Succeeded, Failed).",
            ["namespace", "phase"],
            registry=registry,
        )
        self._seen: set[tuple[str, ...]] = set()
        """Namespaces, (namespace, Agent) and (namespace, Agent, model) with series at 0."""

    def _first_seen(self, namespace: str, agents: Iterable[str]) -> None:
        """Create the series of a namespace and its Agents at 0 the first time they are seen."""
        if (namespace,) not in self._seen:
            self._seen.add((namespace,))
            for phase in ENDED:
                self.workflows_finished.labels(namespace, phase.value)
        for agent in agents:
            if (namespace, agent) not in self._seen:
                self._seen.add((namespace, agent))
                for counter in (self.started, self.retried, self.succeeded, self.failed):
                    counter.labels(namespace, agent)

    def _model_seen(self, labels: tuple[str, str, str]) -> None:
        """Create a model's token, call and 429 series at 0 when its first calls are counted."""
        if labels not in self._seen:
            self._seen.add(labels)
            for direction in DIRECTIONS:
                self.tokens.labels(*labels, direction)
            self.llm_calls.labels(*labels)
            self.llm_errors.labels(*labels, RATE_LIMITED)

    def attempt_started(
        self,
        namespace: str,
        agent: str,
        attempt: int,
        waited: float,
        reason: str | None,
        dispatch: float | None,
    ) -> None:
        """This operator created the Job of ``attempt``; ``reason`` is the core's, if held."""
        self._first_seen(namespace, (agent,))
        counter = self.started if attempt == 1 else self.retried
        counter.labels(namespace, agent).inc()
        self.queue_wait.labels(namespace, reason_label(reason)).observe(max(0.0, waited))
        if dispatch is not None:
            self.dispatch.labels(namespace).observe(max(0.0, dispatch))

    def settled(
        self,
        namespace: str,
        agents: Mapping[str, str],
        before: WorkflowStatus,
        after: WorkflowStatus,
        jobs: Sequence[ObservedJob] = (),
    ) -> None:
        """Count what ``after`` records that ``before`` did not; call once ``after`` is written.

        ``agents`` maps task names to their named Agent, for attempts whose Agent
        status does not record (see :func:`attempt_agent`); ``jobs`` are the Jobs the
        decision saw, whose reports name the model of the attempts just settled.
        """
        self._first_seen(namespace, set(agents.values()))
        if after.phase in ENDED and before.phase != after.phase:
            self.workflows_finished.labels(namespace, after.phase.value).inc()
        attempts = {(job.task, job.attempt): job for job in jobs}
        reported = _reported_models(jobs)
        for name, task in after.tasks.items():
            previous = before.tasks.get(name)
            if previous is task:
                continue  # the core kept it as it was: nothing new (and cheap in a large run)
            named = agents.get(parent_of(name))  # an instance runs its task's Agent
            job = attempts.get((name, task.attempts))
            ended_now = previous is None or previous.phase != task.phase
            if task.phase in TASK_ENDED and ended_now and task.items is None:  # not a forEach
                agent = attempt_agent(task, task.attempts, named)
                self._first_seen(namespace, (agent,))
                ended = self.succeeded if task.phase == TaskPhase.SUCCEEDED else self.failed
                ended.labels(namespace, agent).inc()
                started = task.started_at or (previous.started_at if previous else None)
                finished = task.finished_at or (job.finished_at if job else None)
                if started is not None and finished is not None:
                    seconds = max(0.0, (finished - started).total_seconds())
                    self.duration.labels(namespace, agent, task.phase.value).observe(seconds)
            spent = _increase(previous.usage if previous else None, task.usage)
            calls = _more_calls(previous.calls if previous else None, task.calls)
            if spent is None and calls is None:
                continue
            attempt, model = reported.get(name) or (task.attempts, task.model or UNKNOWN)
            agent = attempt_agent(task, attempt, named)
            labels = (namespace, agent, model[:MODEL_CHARS])
            self._model_seen(labels)
            if spent is not None:
                for direction, tokens in zip(
                    DIRECTIONS, (spent.input_tokens, spent.output_tokens), strict=True
                ):
                    if tokens:
                        self.tokens.labels(*labels, direction).inc(tokens)
            if calls is not None:
                self.llm_calls.labels(*labels).inc(calls.total)
                for status, failed in calls.failed.items():
                    self.llm_errors.labels(*labels, status).inc(failed)


def _increase(before: TokenUsage | None, after: TokenUsage | None) -> TokenUsage | None:
    """Tokens ``after`` records beyond ``before`` (None: none); a decrease counts as none."""
    if after is None:
        return None
    was = before or TokenUsage()
    spent = TokenUsage(
        input_tokens=max(0, after.input_tokens - was.input_tokens),
        output_tokens=max(0, after.output_tokens - was.output_tokens),
    )
    return spent if spent.input_tokens or spent.output_tokens else None


def _more_calls(before: ModelCalls | None, after: ModelCalls | None) -> ModelCalls | None:
    """Calls ``after`` records beyond ``before``, per status (None: none; decreases: none)."""
    if after is None:
        return None
    was = before or ModelCalls()
    failed = {
        status: more
        for status, count in after.failed.items()
        if (more := count - was.failed.get(status, 0)) > 0
    }
    calls = ModelCalls(total=max(0, after.total - was.total), failed=failed)
    return calls if calls.total or calls.failed else None


def attempt_agent(task: TaskStatus, attempt: int, named: str | None) -> str:
    """The Agent that ran ``attempt`` of a task: as status records it, else the task's named
    Agent, else ``unknown``."""
    return ran_on(task, attempt) or named or UNKNOWN


def _reported_models(jobs: Sequence[ObservedJob]) -> dict[str, tuple[int, str]]:
    """Each task's latest attempt that reported a model, with the model it names.

    Not the task's current attempt's: with no backoff, the decision that records
    a failed attempt's report also starts the next attempt, which reported nothing yet.
    """
    latest: dict[str, tuple[int, str]] = {}
    for job in jobs:
        result = job.report.result if job.report is not None else None
        if result is not None and job.attempt >= latest.get(job.task, (0, ""))[0]:
            latest[job.task] = (job.attempt, result.model)
    return latest


def note_waiting(
    waiting: dict[str, tuple[float, str]], decided: Mapping[str, str], now: float
) -> None:
    """Fold a decision's held-back tasks into the run's memory of them.

    A task held again keeps the time it was first held, with the latest
    reason; a task the decision no longer holds (started, or no longer ready)
    is forgotten.
    """
    for task in [task for task in waiting if task not in decided]:
        del waiting[task]
    for task, reason in decided.items():
        since = waiting[task][0] if task in waiting else now
        waiting[task] = (since, reason)


def dag_ready_at(
    task: TaskSpec | None, status: WorkflowStatus, created: datetime | None
) -> datetime | None:
    """When the DAG let ``task`` run: its last dependency's end, else the Workflow's creation.

    None when it cannot be told: no spec, or a dependency whose end status no
    longer holds (compacted away in a very large run).
    """
    if task is None:
        return None
    if not task.depends_on:
        return created
    ends = [
        dependency.finished_at if dependency is not None else None
        for dependency in (status.tasks.get(name) for name in task.depends_on)
    ]
    known = [end for end in ends if end is not None]
    return max(known) if len(known) == len(ends) else None


RUN_METRICS: Final = RunMetrics()
"""The operator's run metrics, in prometheus-client's default registry."""
