"""The reconcile core: one pure function from an Observation to a Decision.

Everything a Workflow run does is decided here, from what exists (spec,
status, Jobs and the reports their pods left, Agents, the actions the API
server refused) and the time given: which attempts to start, which Jobs to
stop, the new status and the Events. The kopf shell and ``troupe run`` only
gather observations and execute decisions, so every DAG rule is tested
without a cluster and both run the same rules. Nothing here does I/O or
reads the clock, and no task data passes through: prompts are rendered and
outputs read by the task pods.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime
from functools import partial
from typing import Final

from troupe_operator import dag, expressions
from troupe_operator.api import (
    AgentSpec,
    CacheTarget,
    Condition,
    TaskPhase,
    TaskSpec,
    TaskStatus,
    WorkflowPhase,
    WorkflowSpec,
    WorkflowStatus,
)
from troupe_operator.api.cache import entry_name
from troupe_operator.api.workflow import instance_key
from troupe_operator.spec_checks import check_workflow
from troupe_operator.workflow import candidates, fan_out, memo, selection, supervise
from troupe_operator.workflow.actions import (
    Action,
    CreateTask,
    Decision,
    DeleteJob,
    Event,
    EventType,
    GrantReads,
    PrepareRun,
)
from troupe_operator.workflow.agent_limits import AGENT_CONCURRENCY_LIMIT, AgentSlots
from troupe_operator.workflow.compaction import fit_status
from troupe_operator.workflow.conditions import find_condition, remove_condition, set_condition
from troupe_operator.workflow.deadline import DEADLINE_EXCEEDED, past_deadline
from troupe_operator.workflow.launch import Reads, create_task, upstream_tasks
from troupe_operator.workflow.naming import WorkflowRef
from troupe_operator.workflow.observation import (
    InvalidSpec,
    JobRef,
    JobState,
    Observation,
    ObservedJob,
    TenantShare,
    UnresolvedSpec,
)
from troupe_operator.workflow.priorities import Precedence
from troupe_operator.workflow.revision import spec_hash
from troupe_operator.workflow.run_control import answer_retry
from troupe_operator.workflow.summary import brief, preview_chars, progress, total_usage
from troupe_operator.workflow.tasks import (
    FINISHED,
    NO_REPORT,
    TaskContext,
    TaskOutcome,
    condition_skipped,
    settle_task,
)
from troupe_operator.workflow.timing import after, format_duration, seconds_until, whole_seconds
from troupe_operator.workflow.units import Unit, concurrency, judge_key, parent_of, possible_units
from troupe_operator.workflow.verdict import Verdict, verdict_conditions, verdict_event

SPEC_CHANGE_REFUSED: Final = "SpecChangeRefused"
START_REFUSED: Final = "StartRefused"
INTERRUPTED: Final = "Interrupted"
ADMITTED: Final = "Admitted"
NOT_TENANTED: Final = "NamespaceNotTenanted"
TENANT_CONCURRENCY_LIMIT: Final = "TenantConcurrencyLimit"
TOKEN_BUDGET_EXCEEDED: Final = "TokenBudgetExceeded"
PARALLELISM: Final = "Parallelism"
STOPPED: Final = "Stopped"
SUSPENDED: Final = "Suspended"


def reconcile(observation: Observation) -> Decision:
    """What to do next for one Workflow, and the status to write."""
    status, answer = answer_retry(observation.status, observation.retry_request)
    decision = _reconcile(replace(observation, status=status))
    if answer is None:
        return decision
    return replace(decision, actions=[answer, *decision.actions])


def _reconcile(observation: Observation) -> Decision:
    # Kubernetes timestamps have whole seconds; finer ones would only bloat status.
    observation = replace(
        observation,
        now=whole_seconds(observation.now),
        jobs=[
            replace(
                job,
                started_at=job.started_at and whole_seconds(job.started_at),
                finished_at=job.finished_at and whole_seconds(job.finished_at),
            )
            for job in observation.jobs
        ],
    )
    status = observation.status
    if status.phase in (WorkflowPhase.SUCCEEDED, WorkflowPhase.FAILED):
        return Decision(status=status, actions=list(_stop_jobs(observation.jobs, "run finished")))
    spec, recorded = observation.spec, observation.recorded_spec
    current = spec_hash(spec) if isinstance(spec, WorkflowSpec) else None
    recorded_hash = (
        None if recorded is None else current if recorded is spec else spec_hash(recorded)
    )
    bound = status.spec_hash or recorded_hash
    if bound is None:
        if isinstance(spec, UnresolvedSpec):
            message = brief(f"waiting: {spec.message} (the run starts once it does)")
            waiting = Verdict(WorkflowPhase.PENDING, spec.reason, message, blocked=True)
            return _not_started(observation, waiting)
        problems = (
            list(spec.problems)
            if isinstance(spec, InvalidSpec)
            else check_workflow(observation.name, spec)
        )
        if problems or not isinstance(spec, WorkflowSpec) or current is None:
            return _invalid(observation, problems)
        return _Run(observation, spec, current).decide()
    if isinstance(spec, WorkflowSpec) and current == bound:
        return _Run(observation, spec, bound).decide()
    if recorded is None or recorded_hash != bound:
        return _spec_lost(observation)
    return _Run(observation, recorded, bound, change_refused=True).decide()


def _invalid(observation: Observation, problems: list[str]) -> Decision:
    """An invalid spec: phase Error and one Warning Event, until the spec is fixed."""
    message = brief("invalid spec: " + "; ".join(problems))
    return _not_started(observation, Verdict(WorkflowPhase.ERROR, "InvalidSpec", message))


def _not_started(observation: Observation, verdict: Verdict) -> Decision:
    """A run that cannot start (its spec invalid or unresolved): the verdict in status, and a
    Warning Event each time it says something new."""
    previous = observation.status
    message = verdict.message
    status = WorkflowStatus(
        phase=verdict.phase,
        message=message,
        observed_generation=observation.generation,
        conditions=verdict_conditions(
            previous.conditions, verdict, observation.now, observation.generation
        ),
    )
    actions: list[Action] = []
    if previous.phase != verdict.phase or previous.message != message:
        actions.append(Event(EventType.WARNING, verdict.reason, message))
    return Decision(status=status, actions=actions)


def _spec_lost(observation: Observation) -> Decision:
    """The spec changed mid-run and the recorded one is gone: the run cannot go on."""
    previous = observation.status
    message = (
        "the spec changed while running and the spec recorded at start is gone; "
        "the run is stopped (re-create the Workflow to run the new spec)"
    )
    verdict = Verdict(WorkflowPhase.FAILED, "SpecLost", message)
    tasks = {
        name: _cancelled(task, "cancelled: the run was stopped")
        for name, task in previous.tasks.items()
    }
    status = previous.model_copy(
        update={
            "phase": verdict.phase,
            "message": message,
            "tasks": tasks,
            "finished_at": observation.now,
            "observed_generation": observation.generation,
            "conditions": verdict_conditions(
                previous.conditions, verdict, observation.now, observation.generation
            ),
        }
    )
    actions: list[Action] = [*_stop_jobs(observation.jobs, "run stopped")]
    actions.append(Event(EventType.WARNING, "WorkflowFailed", message))
    return Decision(status=status, actions=actions)


def _stop_jobs(jobs: Iterable[ObservedJob], reason: str) -> Iterable[DeleteJob]:
    for job in jobs:
        if job.state == JobState.ACTIVE:
            yield DeleteJob(name=job.name, task=job.task, reason=reason)


def _cancelled(task: TaskStatus, message: str) -> TaskStatus:
    """An unfinished task stopped from outside: Cancelled if it ever ran (or a parent its
    units had started), else Skipped."""
    if task.phase in FINISHED:
        return task
    ran = bool(task.attempts or task.started_at)
    phase = TaskPhase.CANCELLED if ran else TaskPhase.SKIPPED
    text = message if ran else "not run: the run was stopped"
    return task.model_copy(update={"phase": phase, "message": text})


class _Run:
    """One reconcile of a valid run: settle every task, stop or schedule, sum up."""

    def __init__(
        self,
        observation: Observation,
        spec: WorkflowSpec,
        spec_hash: str,
        change_refused: bool = False,
    ) -> None:
        self.observation = observation
        self.workflow = WorkflowRef(observation.namespace, observation.name, observation.uid)
        self.spec = spec
        self.spec_hash = spec_hash
        self.change_refused = change_refused
        self.now = observation.now
        self.previous = observation.status
        self.task_specs = {task.name: task for task in spec.tasks}
        self.precedence = Precedence.of(spec)
        self.context = TaskContext(
            workflow=self.workflow,
            retry_backoff_seconds=spec.retry_backoff_seconds,
            preview_chars=preview_chars(len(spec.tasks)),
            now=self.now,
        )
        self.jobs: dict[str, dict[int, ObservedJob]] = defaultdict(dict)
        self.tasks: dict[str, TaskStatus] = {}
        """Each task's status, and each instance's under its own key."""
        self.units: dict[str, Unit] = {}
        self.wanted: list[tuple[str, int]] = []
        self.actions: list[Action] = []
        self.wake_times: list[datetime] = []
        self.agent_waits = selection.AgentWaits()
        self.unobserved: list[JobRef] = []
        self.held: tuple[str, int] | None = None
        """The Tenant limit that held ready attempts back, and how many it held."""
        self.waiting: dict[str, str] = {}
        """Ready tasks not started by this decision, with what held each back."""
        self.agent_slots = AgentSlots(observation.agent_slots)

    def decide(self) -> Decision:
        wanted = self._settle_tasks()
        self._apply_refused_creates()
        stop = self._stop_reason(self._started_at())
        if stop is not None:
            self._stop(stop)
        elif self.observation.suspended:
            self.waiting = {
                name: SUSPENDED for name, _ in wanted if self.tasks[name].phase not in FINISHED
            }
        elif not self._refused():
            self._schedule(wanted)
        else:
            self.waiting = {
                name: NOT_TENANTED for name, _ in wanted if self.tasks[name].phase not in FINISHED
            }
        started_at = self._started_at()
        if started_at and self.spec.timeout_seconds:
            self.wake_times.append(after(started_at, self.spec.timeout_seconds))
        if self.spec.deadline:
            self.wake_times.append(self.spec.deadline)
        self.tasks = self.precedence.mark_waiting(self.tasks, self.waiting, self.now)
        verdict = stop or self._verdict(started_at)
        return Decision(
            status=self._status(verdict, started_at),
            actions=self._prepare_actions(started_at, verdict) + self._grants() + self.actions,
            requeue_after=None if verdict.finished else self._requeue_after(),
            waiting_for_agents=self.agent_waits.named,
            waiting_for_any_agent=self.agent_waits.any_agent,
            unobserved_jobs=tuple(self.unobserved),
            held_back=self.held[1] if self.held else 0,
            held_by=self.held[0] if self.held else None,
            waiting=self.waiting,
            held_by_agent=dict(self.agent_slots.held),
        )

    def _settle_tasks(self) -> list[tuple[str, int]]:
        """Every task's new status; returns the attempts wanted, in a stable order."""
        for job in self.observation.jobs:
            self.jobs[job.task][job.attempt] = job
        order = dag.topological_order({task.name: task.depends_on for task in self.spec.tasks})
        for name in order:
            spec = self.task_specs[name]
            if spec.for_each is not None:
                self._settle_fan_out(spec)
            elif spec.candidates is not None:
                self._settle_candidates(spec)
            elif spec.supervise is not None:
                self._settle_supervise(spec)
            else:
                self._settle_unit(Unit(name, spec), self._upstream(spec))
        return self.precedence.order(self.wanted, self.tasks, self.now)

    def _upstream(self, spec: TaskSpec) -> dict[str, TaskStatus]:
        return {dependency: self.tasks[dependency] for dependency in spec.depends_on}

    def _settle_unit(self, unit: Unit, upstream: dict[str, TaskStatus]) -> TaskOutcome:
        """Fold one unit's Jobs into its status and note what it needs next."""
        self.units[unit.key] = unit
        previous = self.previous.tasks.get(unit.key) or TaskStatus()
        jobs = self.jobs.get(unit.key, {})
        outcome = settle_task(
            unit.settled,
            previous,
            jobs,
            upstream,
            self.context,
            partial(self._condition, unit.spec),
        )
        self.tasks[unit.key] = selection.with_job_agents(previous, outcome.status, jobs)
        if outcome.start_attempt and previous.phase != TaskPhase.RETRYING:
            cached = self._from_cache(unit, outcome.start_attempt, previous)
            if cached is not None:
                outcome = replace(outcome, status=cached, start_attempt=None, event=None)
                self.tasks[unit.key] = cached
        if outcome.event:
            self.actions.append(outcome.event)
        if outcome.start_attempt:
            self.wanted.append((unit.key, outcome.start_attempt))
        if outcome.wake_at:
            self.wake_times.append(outcome.wake_at)
        if outcome.stop_job:
            self.actions.append(DeleteJob(outcome.stop_job, unit.key, "its attempt failed"))
        if outcome.unobserved_job:
            self.unobserved.append(outcome.unobserved_job)
        return outcome

    def _settle_fan_out(self, spec: TaskSpec) -> None:
        """A forEach task: ready → expanded once (recorded as ``items``), then its instances
        settled as units and summed up in the parent's entry."""
        assert spec.for_each is not None
        parent, ready = self._parent_ready(spec)
        if ready:
            items = fan_out.expand(spec, self.tasks[spec.for_each.list_task])
            if isinstance(items, str):
                parent = fan_out.refused(items, self.now)
                message = f"task '{spec.name}' failed: {parent.message}"
                self.actions.append(Event(EventType.WARNING, "TaskFailed", message))
            else:
                parent = fan_out.expanded(parent, items, self.now)
                message = f"task '{spec.name}' expanded into {items} instance(s)"
                self.actions.append(Event(EventType.NORMAL, "TaskExpanded", message))
        instances = {}
        for index in range(parent.items or 0):
            key = instance_key(spec.name, index)
            unit = Unit(key, spec, fan_out.item_ref(spec.for_each, index))
            instances[key] = self._settle_unit(unit, {}).status
        self._sum_up(spec, parent, fan_out.summary(parent, instances, self.now))

    def _settle_candidates(self, spec: TaskSpec) -> None:
        """A candidates task: ready → its candidates recorded and settled as units; once all
        finished, its judge of those that succeeded; the parent sums up and names the winner."""
        assert spec.candidates is not None
        parent, ready = self._parent_ready(spec)
        if ready:
            parent = candidates.started(parent, spec, self.now)
            count = len(parent.candidates or ())
            message = f"task '{spec.name}' runs {count} candidates, then a judge"
            self.actions.append(Event(EventType.NORMAL, "TaskExpanded", message))
        units = {
            entry.unit: self._settle_unit(Unit(entry.unit, spec, agent=entry.agent), {}).status
            for entry in parent.candidates or ()
        }
        judge = None
        judged = candidates.judged(units)
        if judged is not None and candidates.needs_judge(judged):
            agent = spec.candidates.judge.agent
            unit = Unit(judge_key(spec.name), spec, agent=agent, judged=judged)
            judge = self._settle_unit(unit, {}).status
        self._sum_up(spec, parent, candidates.summary(spec, parent, units, judge, self.now))

    def _parent_ready(self, spec: TaskSpec) -> tuple[TaskStatus, bool]:
        """A parent's status, and whether it became ready to expand now: its dependencies
        succeeded and its condition held, and it has not expanded, judged or started its
        loop yet. Its entry is listed before its units'."""
        parent = self.previous.tasks.get(spec.name) or TaskStatus()
        started = (parent.items, parent.candidates, parent.supervise) != (None, None, None)
        if parent.phase in FINISHED or started:
            self.tasks[spec.name] = parent
            return parent, False
        outcome = settle_task(
            spec, parent, {}, self._upstream(spec), self.context, partial(self._condition, spec)
        )
        if outcome.event:
            self.actions.append(outcome.event)
        self.tasks[spec.name] = outcome.status
        return outcome.status, outcome.start_attempt is not None

    def _settle_supervise(self, spec: TaskSpec) -> None:
        """A supervise task: ready → its first turn; then every turn and delegation its
        record started settled as a unit, and the loop advanced until nothing new is decided
        (a restarted operator may find several steps' Jobs done)."""
        parent, ready = self._parent_ready(spec)
        if ready:
            parent = supervise.started(spec, parent, self.now)
        summed = parent
        while True:
            for unit in supervise.units_of(spec, summed, self.workflow):
                if unit.key not in self.units:
                    self._settle_unit(unit, {})
            advanced, event = supervise.advance(spec, summed, self.tasks, self.now)
            if event:
                self.actions.append(event)
            if advanced == summed:
                break
            summed = advanced
        self._sum_up(spec, parent, summed)

    def _sum_up(self, spec: TaskSpec, parent: TaskStatus, summed: TaskStatus) -> None:
        """Record a parent's status summed from its units', with an Event once it finishes."""
        if summed.phase != parent.phase and summed.phase in FINISHED:
            kind, reason = (
                (EventType.NORMAL, "TaskSucceeded")
                if summed.phase == TaskPhase.SUCCEEDED
                else (EventType.WARNING, "TaskFailed")
            )
            verb = "succeeded" if kind == EventType.NORMAL else "failed"
            message = brief(f"task '{spec.name}' {verb}: {summed.message}")
            self.actions.append(Event(kind, reason, message))
        self.tasks[spec.name] = summed

    def _condition(self, spec: TaskSpec) -> bool | str:
        """Whether a ready task's ``when`` holds over the inputs and its upstream tasks' fields.

        The fields are what the upstream tasks' reports carried, kept in status; a task
        whose report was lost has unknown fields, and a condition reading them cannot be
        decided (the task fails rather than guess).
        """
        assert spec.when is not None  # checked by the caller
        expression = expressions.parse(spec.when)  # checked before the run started
        fields: dict[str, expressions.JsonValue] = {}
        for ref in expressions.references(expression):
            if not isinstance(ref, expressions.FieldRef):
                continue
            upstream = self.tasks[ref.task]
            if upstream.phase == TaskPhase.SUCCEEDED and upstream.message == NO_REPORT:
                return (
                    f"its condition reads task '{ref.task}', whose pod left no report: "
                    "the fields it needs are unknown"
                )
            fields[ref.task] = upstream.fields
        return expressions.evaluate(expression, self.spec.inputs, fields)

    def _apply_refused_creates(self) -> None:
        """A Job the API server refused for good fails its task with the server's words."""
        for refusal in self.observation.refusals:
            action = refusal.action
            if not isinstance(action, CreateTask) or action.task not in self.tasks:
                continue
            task = self.tasks[action.task]
            if task.phase in FINISHED:
                continue
            message = brief(
                f"attempt {action.attempt} could not start: its Job was refused: "
                f"{refusal.message} (permanent, not retried)"
            )
            self.tasks[action.task] = task.model_copy(
                update={
                    "phase": TaskPhase.FAILED,
                    "attempts": action.attempt,
                    "job": None,
                    "finished_at": self.now,
                    "message": message,
                    "agents": selection.recorded(
                        task.agents, action.attempt, action.task_input.agent_name
                    ),
                }
            )
            self.actions.append(
                Event(EventType.WARNING, "TaskFailed", f"task '{action.task}' failed: {message}")
            )

    def _started_at(self) -> datetime | None:
        if self.previous.started_at:
            return self.previous.started_at
        starts = [job.started_at or self.now for job in self.observation.jobs]
        if any(isinstance(action, CreateTask) for action in self.actions):
            starts.append(self.now)
        starts += [
            task.started_at for task in self.tasks.values() if task.cached and task.started_at
        ]
        return min(starts, default=None)

    def _refused(self) -> bool:
        """Whether the run may not start: its namespace is no Tenant's (the shell says so).

        Only starting is refused: a run already under way when its namespace loses its
        Tenant goes on (killing its tasks would destroy work the installation once
        allowed).
        """
        return bool(self.observation.tenancy_refusal) and self._started_at() is None

    def _stop_reason(self, started_at: datetime | None) -> Verdict | None:
        """What ends the run early: the shell's stop, a refused start, its timeout or deadline,
        or failFast."""
        if self.observation.stop:
            return Verdict(WorkflowPhase.FAILED, INTERRUPTED, brief(self.observation.stop))
        if self.observation.stop_request is not None:
            message = brief(f"stopped: {self.observation.stop_request}")
            return Verdict(WorkflowPhase.FAILED, STOPPED, message)
        refused = next(
            (r for r in self.observation.refusals if isinstance(r.action, PrepareRun)), None
        )
        if refused is not None:
            message = brief(f"the run cannot start: {refused.message}")
            return Verdict(WorkflowPhase.FAILED, START_REFUSED, message)
        limit = self.spec.timeout_seconds
        if limit and started_at:
            deadline = after(started_at, limit)
            if self.now >= deadline:
                message = f"timed out after {format_duration(limit)} (timeoutSeconds)"
                return Verdict(WorkflowPhase.FAILED, "Timeout", message)
        passed = past_deadline(self.spec, self.now)
        if passed is not None:
            return passed
        failed = self._failed_tasks()
        if failed and self.spec.fail_fast:
            message = brief(f"{self._failure_summary(failed)}; failFast stopped the run")
            return Verdict(WorkflowPhase.FAILED, "TaskFailed", message)
        return None

    def _stop(self, verdict: Verdict) -> None:
        notes = {
            "Timeout": "workflow timed out",
            START_REFUSED: "the run could not start",
            INTERRUPTED: verdict.message,
            STOPPED: "the run was stopped",
            DEADLINE_EXCEEDED: "the run's deadline passed",
        }
        note = f"cancelled: {notes.get(verdict.reason, 'failFast')}"
        for name, task in self.tasks.items():
            self.tasks[name] = _cancelled(task, note)
        self.actions = [
            action for action in self.actions if not isinstance(action, DeleteJob)
        ] + list(_stop_jobs(self.observation.jobs, verdict.reason))
        self.unobserved.clear()

    def _running_keys(self) -> list[str]:
        """Units whose attempt may be running: those status says run (a parent has no Job
        and is not one), and any other active Job's."""
        current = {
            (name, task.attempts)
            for name, task in self.tasks.items()
            if task.phase == TaskPhase.RUNNING and name in self.units
        }
        others = [
            job.task
            for job in self.observation.jobs
            if job.state == JobState.ACTIVE and (job.task, job.attempt) not in current
        ]
        return [name for name, _ in current] + others

    def _running(self) -> int:
        return len(self._running_keys())

    def _schedule(self, wanted: list[tuple[str, int]]) -> None:
        """Start, in order of precedence, what parallelism, the shell's slots and the Tenant's
        limits allow."""
        limit = self.spec.parallelism
        capacity = len(wanted) if limit is None else max(0, limit - self._running())
        startable: list[CreateTask] = []
        running = Counter(parent_of(key) for key in self._running_keys())
        for name, attempt in wanted:
            if self.tasks[name].phase in FINISHED:
                continue  # its Job was refused
            unit = self.units[name]
            cap = concurrency(unit.spec)
            if len(startable) == capacity or (cap is not None and running[unit.spec.name] >= cap):
                self.waiting[name] = PARALLELISM
                continue
            observed = self.observation
            choice = selection.agent_for(
                unit.choosing, attempt, observed.agents, observed.agent_profiles, self.now
            )
            if not isinstance(choice, selection.Chosen):
                self.waiting[name] = self.agent_waits.wait(name, choice)
                continue
            if not self.agent_slots.take(choice.name):
                self.waiting[name] = AGENT_CONCURRENCY_LIMIT
                continue
            running[unit.spec.name] += 1
            reads = self._reads(unit)
            key = self._cache_key(unit, choice.spec)
            entry = CacheTarget(name=entry_name(key), key=key) if key else None
            startable.append(
                create_task(self.workflow, unit, attempt, choice.spec, reads, choice.name, entry)
            )
        tenant = self.observation.tenant
        if startable and tenant is not None and self._over_budget(tenant):
            self.held = (TOKEN_BUDGET_EXCEEDED, len(startable))
            self.waiting.update(dict.fromkeys((a.task for a in startable), TOKEN_BUDGET_EXCEEDED))
            return
        slots, held_by = len(startable), None
        for by, free in (
            (PARALLELISM, self.observation.free_slots),
            (TENANT_CONCURRENCY_LIMIT, tenant.free_slots if tenant is not None else None),
        ):
            if free is not None and free < slots:
                slots, held_by = free, by
        if held_by is not None:
            self.held = (held_by, len(startable) - slots)
            self.waiting.update(dict.fromkeys((a.task for a in startable[slots:]), held_by))
        for action in startable[:slots]:
            self._started(action)

    def _tokens_used(self, tenant: TenantShare) -> int:
        """The Tenant's tokens: its other Workflows', and this run's own as settled now."""
        own = total_usage(self.tasks.values())
        return tenant.tokens_elsewhere + (own.total_tokens if own else 0)

    def _over_budget(self, tenant: TenantShare) -> bool:
        budget = tenant.token_budget
        return budget is not None and self._tokens_used(tenant) >= budget

    def _reads(self, unit: Unit) -> Reads:
        """Where the outputs ``unit`` reads are, from its upstream tasks' statuses."""
        upstream: dict[str, str] = {}
        fan_in: dict[str, list[str]] = {}
        skipped: list[str] = []
        for name in upstream_tasks(unit.spec):
            task = self.tasks[name]
            if condition_skipped(task):
                skipped.append(name)
            elif task.items is not None:
                keys = (instance_key(name, index) for index in range(task.items))
                fan_in[name] = [self._output_of(key) for key in keys]
            else:
                upstream[name] = self._output_of(task.result_of or name)
        return Reads(upstream, fan_in, skipped)

    def _output_of(self, key: str) -> str:
        """The ConfigMap holding a unit's output: its cache entry, else the run's own."""
        task = self.tasks.get(key)
        if task is not None and task.cached is not None:
            return task.cached.entry
        return self.workflow.output_config_map(key)

    def _from_cache(self, unit: Unit, attempt: int, previous: TaskStatus) -> TaskStatus | None:
        """A memoized unit ready to start, served from a young enough cache entry instead:
        never while the run is suspended or not admitted."""
        cache = memo.setting(self.spec, unit.spec)
        if cache is None or self.observation.suspended or self._refused():
            return None
        observed = self.observation
        choice = selection.agent_for(
            unit.choosing, attempt, observed.agents, observed.agent_profiles, self.now
        )
        key = self._cache_key(unit, choice.spec) if isinstance(choice, selection.Chosen) else None
        entry = memo.usable(observed.cache.get(key), cache, self.now) if key else None
        if key is None or entry is None:
            return None
        status = memo.served(previous, key, entry, self.now, self.context.preview_chars)
        message = f"task '{unit.key}' {status.message}: {entry.name}"
        self.actions.append(Event(EventType.NORMAL, memo.CACHE_HIT, brief(message)))
        return status

    def _cache_key(self, unit: Unit, agent: AgentSpec) -> str | None:
        """The hash of the unit's cache key on ``agent``; None when it is not memoized."""
        if memo.setting(self.spec, unit.spec) is None:
            return None
        digests: dict[str, str | list[str] | None] = {}
        for name in upstream_tasks(unit.spec):
            task = self.tasks[name]
            if task.result_of is not None:
                task = self.tasks.get(task.result_of, task)
            items = None
            if task.items is not None:
                keys = (instance_key(name, index) for index in range(task.items))
                items = [self.tasks[key] for key in keys]
            digests[name] = memo.upstream_digest(task, items)
        return memo.cache_key(self.spec, unit, agent, digests)

    def _grants(self) -> list[Action]:
        """Before Jobs start, their identity may read the run's cache entries."""
        entries = sorted(
            {task.cached.entry for task in self.tasks.values() if task.cached is not None}
        )
        if not entries or not any(isinstance(a, CreateTask) for a in self.actions):
            return []
        return [GrantReads(self.workflow.task_identity(), tuple(entries))]

    def _started(self, action: CreateTask) -> None:
        previous = self.tasks[action.task]
        self.tasks[action.task] = previous.model_copy(
            update={
                "phase": TaskPhase.RUNNING,
                "attempts": action.attempt,
                "job": action.job_name,
                "started_at": previous.started_at or self.now,
                "finished_at": None,
                "message": previous.message if action.attempt > 1 else None,
                "agents": selection.recorded(
                    previous.agents, action.attempt, action.task_input.agent_name
                ),
            }
        )
        self.actions.append(action)
        message = f"task '{action.task}' attempt {action.attempt} started (Job {action.job_name})"
        self.actions.append(Event(EventType.NORMAL, "TaskStarted", message, routine=True))

    def _spec_tasks(self) -> dict[str, TaskStatus]:
        """The entries of the spec's tasks, without their instances'."""
        return {name: self.tasks[name] for name in self.task_specs}

    def _failed_tasks(self) -> list[str]:
        """The spec's failed tasks: a unit's failure counts through its parent (a failed
        candidate need not fail its task)."""
        return [name for name, task in self._spec_tasks().items() if task.phase == TaskPhase.FAILED]

    def _failure_summary(self, failed: list[str]) -> str:
        first = failed[0]
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        return f"task '{first}' failed{more}: {self.tasks[first].message or 'no message'}"

    def _verdict(self, started_at: datetime | None) -> Verdict:
        tasks = self._spec_tasks()
        total = len(tasks)
        if all(task.phase in FINISHED for task in self.tasks.values()):
            failed = self._failed_tasks()
            if failed:
                return Verdict(WorkflowPhase.FAILED, "TaskFailed", self._failure_summary(failed))
            skipped = sum(1 for task in tasks.values() if condition_skipped(task))
            if skipped:
                message = f"{total - skipped} tasks succeeded, {skipped} skipped by conditions"
                return Verdict(WorkflowPhase.SUCCEEDED, "Succeeded", message)
            return Verdict(WorkflowPhase.SUCCEEDED, "Succeeded", f"all {total} tasks succeeded")
        refusal = self.observation.tenancy_refusal
        if refusal and started_at is None:
            return Verdict(WorkflowPhase.PENDING, NOT_TENANTED, brief(refusal), blocked=True)
        phase = WorkflowPhase.RUNNING if started_at else WorkflowPhase.PENDING
        if self.observation.suspended:
            running = sum(1 for task in tasks.values() if task.phase == TaskPhase.RUNNING)
            message = (
                f"suspended: no task starts, {running} running finish "
                "(remove the troupe.dev/suspend annotation, or troupe resume, to go on)"
            )
            return Verdict(phase, SUSPENDED, message)
        waiting = self.agent_waits.verdict(self.observation.namespace)
        if waiting:
            return Verdict(phase, *waiting, blocked=True)
        held = self._held_message()
        if self.held and held:
            reason = self.held[0]
            return Verdict(phase, reason, held, blocked=reason == TOKEN_BUDGET_EXCEEDED)
        by_agent = self.agent_slots.message(self.observation.agents)
        if by_agent:
            return Verdict(phase, AGENT_CONCURRENCY_LIMIT, by_agent)
        counts = Counter(task.phase for task in tasks.values())
        if phase == WorkflowPhase.PENDING:
            return Verdict(phase, "Pending", "waiting to start")
        parts = [f"{counts[p]} {p.value.lower()}" for p in TaskPhase if counts[p]]
        return Verdict(phase, "Running", ", ".join(parts))

    def _held_message(self) -> str | None:
        """Why ready attempts wait for the Tenant, naming the limit."""
        tenant = self.observation.tenant
        if self.held is None or tenant is None or self.held[0] == PARALLELISM:
            return None
        reason, count = self.held
        if reason == TOKEN_BUDGET_EXCEEDED:
            return (
                f"{count} ready task(s) wait: Tenant {tenant.tenant} has used "
                f"{self._tokens_used(tenant)} of its {tenant.token_budget} tokens "
                "(limits.tokenBudget); raising the budget lets them start"
            )
        # No counts that change while it waits: a woken run that gets no slot writes nothing.
        return (
            f"ready tasks wait for a slot: Tenant {tenant.tenant} runs at most "
            f"{tenant.max_concurrent_tasks} tasks at once across its Workflows "
            "(limits.maxConcurrentTasks)"
        )

    def _status(self, verdict: Verdict, started_at: datetime | None) -> WorkflowStatus:
        finished_at = self.previous.finished_at or (self.now if verdict.finished else None)
        conditions = verdict_conditions(
            self.previous.conditions, verdict, self.now, self.observation.generation
        )
        conditions = self._spec_change_condition(conditions)
        conditions = self._admitted_condition(verdict, conditions)
        self._announce(verdict, conditions)
        status = WorkflowStatus(
            phase=verdict.phase,
            progress=progress(self._spec_tasks(), len(self.task_specs)),
            started_at=started_at,
            finished_at=finished_at,
            duration=(
                format_duration(((finished_at or self.now) - started_at).total_seconds())
                if started_at
                else None
            ),
            message=verdict.message,
            tasks=self.tasks if memo.in_use(self.spec) else memo.without_digests(self.tasks),
            usage=total_usage(self.tasks.values()),
            observed_generation=self.observation.generation,
            spec_hash=self.spec_hash if started_at or verdict.finished else None,
            resolved_from=(
                self.observation.resolved_from if started_at or verdict.finished else None
            ),
            conditions=conditions,
            retries=self.previous.retries,
            retry_request=self.previous.retry_request,
        )
        return fit_status(
            status,
            needed=self._fields_needed(),
            specs=self.task_specs,
            digests=self._digests_needed(),
        )

    def _digests_needed(self) -> frozenset[str]:
        """Units whose output digest an unfinished memoized task's key will read."""
        needed: set[str] = set()
        for name, spec in self.task_specs.items():
            if self.tasks[name].phase in FINISHED or memo.setting(self.spec, spec) is None:
                continue
            for upstream in upstream_tasks(spec):
                task = self.tasks[upstream]
                needed.update([upstream, *([task.result_of] if task.result_of else [])])
                needed.update(instance_key(upstream, i) for i in range(task.items or 0))
        return frozenset(needed)

    def _fields_needed(self) -> frozenset[str]:
        """Tasks whose fields a condition not yet decided will read."""
        needed: set[str] = set()
        for name, task in self._spec_tasks().items():
            condition = self.task_specs[name].when
            if condition is None or task.phase in FINISHED or task.attempts:
                continue
            refs = expressions.references(expressions.parse(condition))
            needed.update(ref.task for ref in refs if isinstance(ref, expressions.FieldRef))
        return frozenset(needed)

    def _spec_change_condition(self, conditions: list[Condition]) -> list[Condition]:
        if not self.change_refused:
            return remove_condition(conditions, SPEC_CHANGE_REFUSED)
        message = (
            "the spec changed while the run is in progress; the run goes on with the spec "
            "it started with (re-create the Workflow to run the new spec)"
        )
        return set_condition(
            conditions,
            SPEC_CHANGE_REFUSED,
            True,
            SPEC_CHANGE_REFUSED,
            message,
            self.now,
            self.observation.generation,
        )

    def _admitted_condition(self, verdict: Verdict, conditions: list[Condition]) -> list[Condition]:
        """Admitted False while the run is refused; True once a refused run is let go."""
        if verdict.reason == NOT_TENANTED:
            return set_condition(
                conditions,
                ADMITTED,
                False,
                NOT_TENANTED,
                verdict.message,
                self.now,
                self.observation.generation,
            )
        if find_condition(conditions, ADMITTED) is None:
            return conditions
        return set_condition(
            conditions,
            ADMITTED,
            True,
            ADMITTED,
            "its namespace belongs to a Tenant",
            self.now,
            self.observation.generation,
        )

    def _announce(self, verdict: Verdict, conditions: list[Condition]) -> None:
        """Events for what changed at the workflow level since the last status."""
        ended = verdict_event(self.previous.phase, verdict)
        if ended:
            self.actions.append(ended)
        previous_ready = find_condition(self.previous.conditions, "Ready")
        was = previous_ready.reason if previous_ready else None
        if verdict.blocked and was != verdict.reason:
            self.actions.append(Event(EventType.WARNING, verdict.reason, verdict.message))
        if verdict.reason == SUSPENDED and was != SUSPENDED:
            self.actions.append(Event(EventType.NORMAL, SUSPENDED, verdict.message))
        elif was == SUSPENDED and verdict.reason != SUSPENDED and not verdict.finished:
            self.actions.append(Event(EventType.NORMAL, "Resumed", "resumed: tasks start again"))
        refused = find_condition(self.previous.conditions, SPEC_CHANGE_REFUSED)
        current = find_condition(conditions, SPEC_CHANGE_REFUSED)
        if current and (
            refused is None or refused.observed_generation != current.observed_generation
        ):
            self.actions.append(Event(EventType.WARNING, SPEC_CHANGE_REFUSED, current.message))

    def _prepare_actions(self, started_at: datetime | None, verdict: Verdict) -> list[Action]:
        """Set the run up once it starts: its pods' identity and its recorded spec."""
        if started_at is None or verdict.finished or self.observation.recorded_spec is not None:
            return []
        outputs = tuple(self.workflow.output_config_map(key) for key in possible_units(self.spec))
        return [
            PrepareRun(
                spec_config_map=self.workflow.spec_config_map(),
                spec=self.spec,
                service_account=self.workflow.task_identity(),
                outputs=outputs,
            )
        ]

    def _requeue_after(self) -> float | None:
        waits = [seconds_until(moment, self.now) for moment in self.wake_times]
        return min(waits, default=None)
