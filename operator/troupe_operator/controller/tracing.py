"""Traces of Workflow runs: a span per run and per task attempt, and the context task pods join.

A run lasts minutes or hours and outlives operator processes (a restart, a
failover to the standby), so no span is held open in memory. Each span is
built whole once status records that what it covers has ended, from what the
cluster keeps: the run's span (``invoke_workflow``) when status first records
Succeeded or Failed, from the Workflow's ``creationTimestamp`` to its
``finishedAt``; an attempt's span (``task <name>``) when status first records
that attempt over (its task ended, or a later attempt began), from its Job's
start to its end. It is exported once, by the reconcile whose status write
recorded the end, after that write: a reconcile retried after a failed write
starts from the same status, and a restarted operator from the status the
previous one wrote, so neither sees the end as new again.

Identities are derived, never stored: the trace id is the Workflow's uid (its
128 bits; a uid that is not a UUID is hashed), the run's span id and each
attempt's are hashes of the uid, task and attempt. So any operator process,
before or after a restart, names the same spans, and a task pod's
``TRACEPARENT`` (set in its Job, naming its attempt's span as parent) joins the
trace its attempt's span will be exported into, long before that span exists.
A process that dies between the status write and the export loses the span;
none is ever exported under two identities, so one run never has two root
spans. The sampler (``OTEL_TRACES_SAMPLER``) decides on the trace id, the same
way in every process; the decision rides in ``TRACEPARENT``.

The control plane carries no task data: names, phases, counts, token numbers,
bounded reasons and timestamps only; never a prompt, output, preview or
message. Off (no SDK, no spans, no ``TRACEPARENT``) unless ``OTEL_*`` ask for
traces (:mod:`troupe_operator.otel_config`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import Decision
from opentelemetry.util.types import AttributeValue

from troupe_operator import otel_config, semconv
from troupe_operator.api import TaskPhase, TaskStatus, TokenUsage, WorkflowPhase, WorkflowStatus
from troupe_operator.controller.config import ConfigError
from troupe_operator.workflow import (
    JobState,
    Observation,
    ObservedJob,
    WorkflowRef,
    parent_of,
    ran_on,
)

logger = logging.getLogger(__name__)

SERVICE: Final = "troupe-operator"
INSTRUMENTATION: Final = "troupe_operator"
TRACEPARENT: Final = "TRACEPARENT"
ENDED: Final = frozenset({WorkflowPhase.SUCCEEDED, WorkflowPhase.FAILED})

Attributes = dict[str, AttributeValue]
ProviderFactory = Callable[[IdGenerator], TracerProvider | None]
"""Makes the tracer provider spans go through, given the id generator it must use."""


def trace_id_of(uid: str) -> int:
    """The trace of the run whose Workflow has ``uid``: the uid itself, when it is a UUID."""
    try:
        value = uuid.UUID(uid).int
    except ValueError:
        value = 0
    return value or int.from_bytes(_digest("trace", uid)[:16])


def span_id_of(uid: str, task: str | None = None, attempt: int = 0) -> int:
    """The span of the run (no ``task``), or of one attempt of one of its tasks."""
    return int.from_bytes(_digest("span", uid, task or "", str(attempt))[:8]) or 1


def _digest(*parts: str) -> bytes:
    return hashlib.sha256("\0".join(parts).encode()).digest()


class _DerivedIds(IdGenerator):
    """Hands the SDK the ids derived for the span about to be built (see :meth:`_emit`).

    Set and used with no await between: the spans of all runs are built on one
    event loop, one at a time.
    """

    def __init__(self) -> None:
        self.trace_id = 0
        self.span_id = 0

    def generate_trace_id(self) -> int:
        return self.trace_id

    def generate_span_id(self) -> int:
        return self.span_id


class RunTracer:
    """The spans of Workflow runs, and the trace environment of their task pods."""

    def __init__(
        self,
        provider: ProviderFactory = lambda ids: None,
        child_environment: Mapping[str, str] | None = None,
    ) -> None:
        """No ``provider`` (none made): tracing is off."""
        self._ids = _DerivedIds()
        self._provider = provider(self._ids)
        self._tracer = (
            self._provider.get_tracer(INSTRUMENTATION, schema_url=semconv.SCHEMA_URL)
            if self._provider is not None
            else None
        )
        self._child_environment = dict(child_environment or {})

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> RunTracer:
        """Tracing as ``OTEL_*`` ask; ConfigError when they ask for what cannot be done."""

        def provider(ids: IdGenerator) -> TracerProvider | None:
            return otel_config.tracer_provider(SERVICE, environ, id_generator=ids)

        try:
            return cls(provider, otel_config.child_environment(environ))
        except otel_config.OtelConfigError as error:
            raise ConfigError(str(error)) from None

    def shutdown(self) -> None:
        """Export what is queued (bounded by the exporter's timeout); call once, at exit."""
        if self._provider is not None:
            self._provider.shutdown()

    def task_environment(self, run: WorkflowRef, task: str, attempt: int) -> dict[str, str]:
        """What a task pod's environment needs to export into this attempt's trace."""
        if self._provider is None:
            return dict(self._child_environment)
        root = self._root(run)
        traceparent = (
            f"00-{root.trace_id:032x}-{span_id_of(run.uid, task, attempt):016x}"
            f"-{int(root.trace_flags):02x}"
        )
        return {**self._child_environment, TRACEPARENT: traceparent}

    def settled(
        self,
        run: WorkflowRef,
        created: datetime | None,
        observation: Observation,
        after: WorkflowStatus,
        agents: Mapping[str, str],
    ) -> None:
        """Export the spans of what ``after`` records as ended and ``observation`` did not.

        Call once ``after`` is written. ``created`` is the Workflow's creation time;
        ``agents`` maps task names to their named Agent, for an attempt whose Agent
        ``after`` does not record. It never raises: the status is
        written, and the reconcile must go on to post its Events whatever its spans do.
        """
        if self._tracer is None:
            return
        before = observation.status
        try:
            for name, ended in _ended_attempts(observation, after):
                agent = ran_on(ended.after, ended.attempt) or agents.get(parent_of(name))
                self._attempt_span(run, name, ended, agent)
            if after.phase in ENDED and before.phase != after.phase:
                self._run_span(run, created, after, observation.now)
        except Exception:
            logger.warning("spans of %s/%s not exported", run.namespace, run.name, exc_info=True)

    def _root(self, run: WorkflowRef) -> trace.SpanContext:
        assert self._provider is not None
        trace_id = trace_id_of(run.uid)
        decision = self._provider.sampler.should_sample(
            None, trace_id, semconv.INVOKE_WORKFLOW, trace.SpanKind.INTERNAL
        ).decision
        sampled = decision == Decision.RECORD_AND_SAMPLE
        flags = trace.TraceFlags.SAMPLED if sampled else trace.TraceFlags.DEFAULT
        return trace.SpanContext(
            trace_id, span_id_of(run.uid), is_remote=False, trace_flags=trace.TraceFlags(flags)
        )

    def _run_span(
        self, run: WorkflowRef, created: datetime | None, status: WorkflowStatus, now: datetime
    ) -> None:
        attributes: Attributes = {
            semconv.OPERATION_NAME: semconv.INVOKE_WORKFLOW,
            semconv.NAMESPACE: run.namespace,
            semconv.WORKFLOW_NAME: run.name,
            semconv.WORKFLOW_UID: run.uid,
            semconv.WORKFLOW_TASKS: len(status.tasks),
            **_usage(status.usage),
        }
        error = None
        if status.phase is not None:
            attributes[semconv.WORKFLOW_PHASE] = status.phase.value
        if status.phase == WorkflowPhase.FAILED:
            failed = (c for c in status.conditions if c.type == WorkflowPhase.FAILED)
            error = next((c.reason for c in failed), None) or WorkflowPhase.FAILED.value
        end = status.finished_at or now
        self._emit(
            semconv.INVOKE_WORKFLOW,
            (trace_id_of(run.uid), span_id_of(run.uid)),
            None,
            trace.SpanKind.INTERNAL,
            (created or status.started_at or end, end),
            attributes,
            error,
        )

    def _attempt_span(
        self, run: WorkflowRef, task: str, ended: _Attempt, agent: str | None
    ) -> None:
        attempt = ended.attempt
        phase = ended.phase()
        attributes: Attributes = {
            semconv.NAMESPACE: run.namespace,
            semconv.JOB_NAME: run.job_name(task, attempt),
            semconv.TASK_NAME: task,
            semconv.TASK_ATTEMPT: attempt,
            semconv.TASK_PHASE: phase,
        }
        if agent is not None:
            attributes[semconv.AGENT_NAME] = agent
        report = ended.job.report if ended.job is not None else None
        if report is not None and report.result is not None:
            attributes.update(_usage(report.result.usage))
        self._emit(
            f"task {task}",
            (trace_id_of(run.uid), span_id_of(run.uid, task, attempt)),
            self._root(run),
            trace.SpanKind.CLIENT,
            ended.times(),
            attributes,
            ended.error() if phase == TaskPhase.FAILED else None,
        )

    def _emit(
        self,
        name: str,
        ids: tuple[int, int],
        parent: trace.SpanContext | None,
        kind: trace.SpanKind,
        times: tuple[datetime, datetime],
        attributes: Attributes,
        error: str | None,
    ) -> None:
        """Build and end one span whole, with the given ids and times."""
        assert self._tracer is not None
        context = (
            Context()
            if parent is None
            else trace.set_span_in_context(trace.NonRecordingSpan(parent))
        )
        if error is not None:
            attributes[semconv.ERROR_TYPE] = error
        self._ids.trace_id, self._ids.span_id = ids
        start, end = times
        span = self._tracer.start_span(
            name, context, kind, attributes, start_time=_nanoseconds(start)
        )
        if error is not None:
            span.set_status(trace.StatusCode.ERROR)
        span.end(end_time=_nanoseconds(max(start, end)))


@dataclass(frozen=True)
class _Attempt:
    """An attempt that has just ended: its task's status before and after, and its Job."""

    attempt: int
    before: TaskStatus
    after: TaskStatus
    now: datetime
    job: ObservedJob | None = None

    def phase(self) -> str:
        """How it ended: Succeeded, Failed (also when a retry follows), Cancelled."""
        if self.after.attempts > self.attempt or self.after.phase == TaskPhase.RETRYING:
            return TaskPhase.FAILED.value
        return self.after.phase.value

    def times(self) -> tuple[datetime, datetime]:
        """From its Job's start (the task's start, for a first attempt) to its end."""
        job = self.job
        end = (job.finished_at if job else None) or self.after.finished_at or self.now
        first = self.before.started_at if self.attempt == 1 else None
        return (job.started_at if job else None) or first or end, end

    def error(self) -> str:
        """Why it failed, as a bounded reason (never the pod's message)."""
        job = self.job
        if job is None:
            return "TaskFailed"
        if job.deadline_exceeded:
            return "DeadlineExceeded"
        if job.permanent:
            return "PermanentFailure"
        if job.state == JobState.GONE:
            return "JobDeleted"
        if job.problem is not None:
            return job.problem.reason
        return "TaskFailed"


def _ended_attempts(
    observation: Observation, after: WorkflowStatus
) -> Iterator[tuple[str, _Attempt]]:
    """The attempts the observed status has running and ``after`` records over, by task."""
    jobs = {(job.task, job.attempt): job for job in observation.jobs}
    for name, task in after.tasks.items():
        previous = observation.status.tasks.get(name)
        if previous is None or previous.phase != TaskPhase.RUNNING or previous.attempts < 1:
            continue
        attempt = previous.attempts
        if task.attempts == attempt and task.phase == TaskPhase.RUNNING:
            continue
        job = jobs.get((name, attempt))
        yield name, _Attempt(attempt, previous, task, observation.now, job)


def _usage(usage: TokenUsage | None) -> Attributes:
    if usage is None:
        return {}
    return {semconv.INPUT_TOKENS: usage.input_tokens, semconv.OUTPUT_TOKENS: usage.output_tokens}


def _nanoseconds(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000) * 1000


DISABLED: Final = RunTracer()
"""No traces: what a reconciler built without tracing uses."""
