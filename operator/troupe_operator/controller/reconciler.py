"""One reconcile of one Workflow: observe, ask the core, execute, write status, post Events.

The workers guarantee that one Workflow is never reconciled twice at once.
A reconcile observes the run from memory (the newest Workflow seen, kopf's
index of its Jobs, what ``runs`` remembers) and from the API only where
memory cannot answer: the pods of a Job that just finished (their
termination reports), the run's Jobs once per resync period (so a missed
watch event costs at most that), a Job status says exists but nobody has
seen, the pods of a Job that does not start, the recorded spec after the
spec changed, and, until a run starts, the ConfigMaps and Secret keys its
inputs name (``resolving``; a WorkflowTemplate comes from kopf's index). It
executes the core's actions in order, the run's identity and spec before any
Job. An action the API server refuses for good goes back
to the core at once (which fails the task or the run with the server's
words); any other failure raises, and the worker retries the whole reconcile
with backoff: every action is idempotent, and status and Events are written
only once the actions succeeded, so a replay repeats nothing. It counts the
run's metrics as it goes (``run_metrics``): the Jobs it creates, and what each
status it writes records that the one before did not; and, when tracing is on,
exports the spans of the runs and attempts a status it writes ends (``tracing``),
and gives each task Job the trace of its attempt.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final, assert_never

from pydantic import ValidationError

from troupe_operator import resolution
from troupe_operator.api import (
    SPEC_KEY,
    AgentSpec,
    TaskPhase,
    TaskSpec,
    WorkflowPhase,
    WorkflowSpec,
    WorkflowStatus,
)
from troupe_operator.api.run_control import RunRequests
from troupe_operator.controller import children, observe, resolving, run_metrics, tenancy
from troupe_operator.controller.agent_concurrency import Concurrency
from troupe_operator.controller.agent_limits import AgentGate, starts_by_agent
from troupe_operator.controller.config import OperatorConfig
from troupe_operator.controller.events import EventRecorder
from troupe_operator.controller.kube import ApiError, Body, Kube
from troupe_operator.controller.metrics import CACHE_LOOKUPS
from troupe_operator.controller.observe import JobRecord
from troupe_operator.controller.run_metrics import RUN_METRICS, RunMetrics
from troupe_operator.controller.runs import RunMemory, Runs, WorkflowKey
from troupe_operator.controller.tenant_limits import TenantGate
from troupe_operator.controller.tracing import DISABLED, RunTracer
from troupe_operator.workflow import (
    LABEL_WORKFLOW,
    AgentProfile,
    CacheEntry,
    CreateTask,
    Decision,
    DeleteJob,
    Event,
    GrantReads,
    InvalidSpec,
    JobRef,
    JobState,
    Observation,
    ObservedJob,
    PrepareRun,
    Refusal,
    UnresolvedSpec,
    WorkflowRef,
    parent_of,
    reconcile,
    spec_hash,
    status_patch,
)
from troupe_operator.workflow.memo import CACHE_HIT

logger = logging.getLogger(__name__)

ENDED: Final[frozenset[WorkflowPhase | None]] = frozenset(
    {WorkflowPhase.SUCCEEDED, WorkflowPhase.FAILED}
)
DECISION_ROUNDS: Final = 3
"""Decisions one reconcile may take when the previous one's actions were refused."""
CONCURRENT_CALLS: Final = 16
"""API calls of one reconcile in flight at once."""

JobSource = Callable[[WorkflowKey], Iterable[JobRecord]]
AgentSource = Callable[[str], Mapping[str, AgentSpec]]
ProfileSource = Callable[[str], Mapping[str, AgentProfile]]
CacheSource = Callable[[str], Mapping[str, CacheEntry]]
"""The cache entries of a namespace, by key hash (``controller.cache_entries``)."""
Clock = Callable[[], datetime]
Create = Callable[[str, Body], Awaitable[Body | None]]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Redecide(Exception):
    """What the decision was based on turned out different; decide again."""


class _Refused(Exception):
    """The API server refused a create for good; the message says why."""


class WorkflowReconciler:
    """Drives Workflows through the pure core against a Kubernetes API."""

    def __init__(
        self,
        kube: Kube,
        config: OperatorConfig,
        jobs: JobSource,
        agents: AgentSource,
        templates: resolving.Templates,
        runs: Runs | None = None,
        agent_profiles: ProfileSource = lambda namespace: {},
        clock: Clock = _utcnow,
        refusal: tenancy.Refusal = tenancy.admitted,
        gate: TenantGate | None = None,
        agent_gate: AgentGate | None = None,
        concurrency: Concurrency | None = None,
        metrics: RunMetrics = RUN_METRICS,
        tracer: RunTracer = DISABLED,
        cache: CacheSource = lambda namespace: {},
    ) -> None:
        self.tracer = tracer
        self.cache = cache
        self.kube = kube
        self.resolver = resolving.SpecResolver(kube, templates)
        self.metrics = metrics
        self.refusal = refusal
        self.gate = gate
        self.agent_gate = agent_gate
        self.concurrency = concurrency
        self.config = config
        self.jobs = jobs
        self.agents = agents
        self.agent_profiles = agent_profiles
        self.runs = runs if runs is not None else Runs()
        self.clock = clock
        self.events = EventRecorder(kube, config.reporting_instance, clock)
        self._calls = asyncio.Semaphore(CONCURRENT_CALLS)

    async def reconcile(self, key: WorkflowKey) -> float | None:
        """Reconcile one Workflow; seconds until it wants to be looked at again (None: never).

        A live run is looked at again within ``resync_seconds`` at most.
        Raises on a failure another try may cure.
        """
        memory = self.runs.get(key)
        if memory is None:
            return None
        run = _run_of(memory.body)
        if not _ended(memory.status()):
            await self._resync(run, memory)
        observation, decision = await self._decide(run, memory)
        run_metrics.note_waiting(memory.waiting, decision.waiting, time.monotonic())
        await self._write_status(run, memory, decision.status)
        self.metrics.settled(
            run.namespace,
            _agents_of(memory.recorded or observation.spec),
            observation.status,
            decision.status,
            observation.jobs,
        )
        self.tracer.settled(
            run,
            observe.timestamp(memory.body["metadata"].get("creationTimestamp")),
            observation,
            decision.status,
            _agents_of(memory.recorded or observation.spec),
        )
        hits = sum(1 for event in decision.of_type(Event) if event.reason == CACHE_HIT)
        if hits:
            CACHE_LOOKUPS.labels(run.namespace, "hit").inc(hits)
        for event in decision.of_type(Event):
            if self.config.task_events or not event.routine:
                await self.events.post(memory.body, event)
        self.runs.wait_for_agents(key, decision.waiting_for_agents, decision.waiting_for_any_agent)
        if _ended(decision.status):
            self.runs.forget(key)
            if self.gate is not None:
                self.gate.forget(key)
            if self.agent_gate is not None:
                self.agent_gate.forget(key)
            return None
        if decision.unobserved_jobs and await self._confirm(run, memory, decision.unobserved_jobs):
            return 0.0
        wait = decision.requeue_after
        return self.config.resync_seconds if wait is None else min(wait, self.config.resync_seconds)

    # -- deciding ---------------------------------------------------------------

    async def _decide(self, run: WorkflowRef, memory: RunMemory) -> tuple[Observation, Decision]:
        """The core's decision with every action executed; refused ones go back to the core.

        Returns the observation it was decided on with it.
        """
        key = (run.namespace, run.name)
        for _ in range(DECISION_ROUNDS):
            # No await between counting the Tenant's slots and reserving the ones taken:
            # concurrent reconciles of one Tenant's runs must not both take the last one.
            observation = await self._observe(run, memory)
            decision = reconcile(observation)
            starts = len(decision.of_type(CreateTask))
            by_agent = starts_by_agent(decision)
            if self.gate is not None:
                self.gate.reserve(key, starts)
            if self.agent_gate is not None:
                self.agent_gate.reserve(key, by_agent)
            try:
                memory.refusals = await self._execute(run, memory, decision)
            except Redecide:
                continue
            finally:
                if self.gate is not None:
                    self.gate.release(key, starts)
                if self.agent_gate is not None:
                    self.agent_gate.release(key, by_agent)
            if not memory.refusals:
                if self.gate is not None:
                    self.gate.decided(key, decision)
                if self.agent_gate is not None:
                    self.agent_gate.decided(key, decision)
                return observation, decision
        raise RuntimeError(
            f"no decision for {run.namespace}/{run.name} in {DECISION_ROUNDS} rounds"
        )

    async def _observe(self, run: WorkflowRef, memory: RunMemory) -> Observation:
        body = memory.body
        status = memory.status()
        spec, resolved_from = await self._resolved(run, memory, status)
        requests = RunRequests.of(body["metadata"].get("annotations"))
        recorded = await self._recorded_spec(run, memory, spec, status)
        priority = _priority(recorded or spec)
        jobs = await self._observed_jobs(run, memory, status)
        agents = self.agents(run.namespace)
        if self.concurrency is not None:
            self.concurrency.finished(run.namespace, jobs, agents)
        return Observation(
            namespace=run.namespace,
            name=run.name,
            uid=run.uid,
            generation=int(body["metadata"].get("generation") or 1),
            spec=spec,
            status=status,
            now=self.clock(),
            jobs=jobs,
            agents=agents,
            agent_profiles=self.agent_profiles(run.namespace),
            recorded_spec=recorded,
            refusals=memory.refusals,
            tenancy_refusal=self.refusal(run.namespace),
            stop_request=requests.stop,
            suspended=requests.suspended,
            retry_request=requests.retry,
            resolved_from=resolved_from,
            cache=self.cache(run.namespace),
            # Last, after every await of this observation: see _decide.
            tenant=self.gate.share((run.namespace, run.name), priority) if self.gate else None,
            agent_slots=self._agent_slots(run, agents, priority),
        )

    def _agent_slots(
        self, run: WorkflowRef, agents: Mapping[str, AgentSpec], priority: int
    ) -> dict[str, int]:
        """The run's share of each capped Agent's free slots (counted with the Tenant's)."""
        if self.agent_gate is None:
            return {}
        capped = [name for name, spec in agents.items() if spec.model.max_concurrency]
        return self.agent_gate.slots((run.namespace, run.name), capped, priority)

    async def _resolved(
        self, run: WorkflowRef, memory: RunMemory, status: WorkflowStatus
    ) -> resolving.Resolved:
        """The spec for the core: the Workflow's own, or resolved from what it names; once
        the run has started from the Workflow's spec as it is, the spec the run recorded. A
        finished run reads nothing: the core looks at its spec no more."""
        own = memory.spec()
        if isinstance(own, InvalidSpec) or _ended(status) or not resolution.needs_resolution(own):
            return own, None
        if resolving.pinned(own, status):
            recorded = await self._recorded_spec(run, memory, None, status)
            if recorded is not None:
                return recorded, status.resolved_from
        spec, resolved_from = await self.resolver.resolve(run.namespace, own)
        return spec, status.resolved_from if status.spec_hash else resolved_from

    def _records(self, run: WorkflowRef, memory: RunMemory) -> dict[str, JobRecord]:
        """The run's Jobs as known: the watch's, unless a later listing says more."""
        records = {
            r.name: r for r in self.jobs((run.namespace, run.name)) if r.owner_uid == run.uid
        }
        for name, record in memory.listed.items():
            if record.finished or name not in records:
                records[name] = record
        return records

    async def _observed_jobs(
        self, run: WorkflowRef, memory: RunMemory, status: WorkflowStatus
    ) -> list[ObservedJob]:
        records = self._records(run, memory)
        observed = list(memory.finished.values())
        finishing = []
        for name, record in records.items():
            memory.created.pop(name, None)
            if name in memory.finished:
                continue
            if record.finished:
                finishing.append(record)
                continue
            job = observe.observed_job(record)
            problem = memory.problems.get(name)
            observed.append(job if problem is None else replace(job, problem=problem))
        observed += await asyncio.gather(
            *(self._finished(run, memory, record, status) for record in finishing)
        )
        for name, (ref, _) in memory.created.items():
            if name not in memory.finished:
                observed.append(observe.observed_job(_unseen_record(ref, run.uid)))
        return observed

    async def _finished(
        self, run: WorkflowRef, memory: RunMemory, record: JobRecord, status: WorkflowStatus
    ) -> ObservedJob:
        """A finished Job as the core sees it, read once, and only if status does not tell yet.

        A successful attempt's report is read from its output ConfigMap's metadata (by
        name); a failed one's, or one without a stamped report, from its pods.
        """
        memory.problems.pop(record.name, None)
        if not _needs_report(record.task, record.attempt, status):
            return observe.observed_job(record)
        termination = None
        if record.outcome == "Complete":
            termination = await self._stamped_report(run, record)
        if termination is None:
            termination = observe.termination_of(await self._pods_of(run, record.name))
        job = observe.observed_job(record, termination)
        memory.finished[record.name] = job  # read once; kept until status records it
        return job

    async def _stamped_report(
        self, run: WorkflowRef, record: JobRecord
    ) -> observe.Termination | None:
        async with self._calls:
            metadata = await self.kube.read_config_map_metadata(
                run.namespace, run.output_config_map(record.task)
            )
        return (
            observe.stamped_report(metadata.get("metadata") or {}, record.attempt)
            if metadata
            else None
        )

    async def _pods_of(self, run: WorkflowRef, job: str) -> list[Body]:
        async with self._calls:
            return await self.kube.list_pods(run.namespace, f"job-name={job}")

    async def _recorded_spec(
        self,
        run: WorkflowRef,
        memory: RunMemory,
        spec: WorkflowSpec | InvalidSpec | UnresolvedSpec | None,
        status: WorkflowStatus,
    ) -> WorkflowSpec | None:
        """The spec the run was prepared with; read back only if the spec has changed since."""
        if memory.recorded is not None or status.spec_hash is None:
            return memory.recorded
        if isinstance(spec, WorkflowSpec) and spec_hash(spec) == status.spec_hash:
            memory.recorded = spec
        else:
            memory.recorded = await self._read_recorded(run)
        return memory.recorded

    async def _read_recorded(self, run: WorkflowRef) -> WorkflowSpec | None:
        config_map = await self.kube.read_config_map(run.namespace, run.spec_config_map())
        if config_map is None or not _owned_by(config_map, run.uid):
            return None
        text = (config_map.get("data") or {}).get(SPEC_KEY)
        try:
            return WorkflowSpec.model_validate_json(text or "")
        except ValidationError:
            return None

    # -- re-observing from the API ----------------------------------------------

    async def _resync(self, run: WorkflowRef, memory: RunMemory) -> None:
        """Once per resync period: list the run's Jobs, and ask the pods of stuck ones why."""
        started = time.monotonic()
        if started - memory.listed_at < self.config.resync_seconds:
            return
        bodies = await self.kube.list_jobs(run.namespace, f"{LABEL_WORKFLOW}={run.name}")
        listed = {}
        for body in bodies:
            record = observe.job_record(body)
            if record is not None and record.owner_uid == run.uid:
                listed[record.name] = record
        for name, record in self._records(run, memory).items():
            created = memory.created.get(name)
            if name not in listed and name not in memory.finished and created is None:
                memory.finished[name] = observe.gone_job(name, record.task, record.attempt)
        memory.listed, memory.listed_at = listed, started
        await self._check_pods(run, memory, listed.values())

    async def _check_pods(
        self, run: WorkflowRef, memory: RunMemory, records: Iterable[JobRecord]
    ) -> None:
        now = self.clock()
        for record in records:
            since = record.started_at or record.created_at
            if record.finished or record.ready or since is None:
                memory.problems.pop(record.name, None)
                continue
            if (now - since).total_seconds() < self.config.pod_check_seconds:
                continue
            problem = observe.pod_problem(await self._pods_of(run, record.name))
            if problem is None:
                memory.problems.pop(record.name, None)
                memory.first_seen_unschedulable.pop(record.name, None)
                continue
            if problem.since is None:
                first = memory.first_seen_unschedulable.setdefault(record.name, now)
                problem = replace(problem, since=first)
            memory.problems[record.name] = problem

    async def _confirm(self, run: WorkflowRef, memory: RunMemory, jobs: Sequence[JobRef]) -> bool:
        """Look up Jobs status names but nobody has seen; whether anything was learnt."""
        learnt = False
        for ref in jobs:
            if ref.name in memory.created or ref.name in memory.finished:
                continue
            body = await self.kube.read_job(run.namespace, ref.name)
            record = observe.job_record(body) if body is not None else None
            if record is not None and record.owner_uid == run.uid:
                memory.listed[ref.name] = record
            else:
                memory.finished[ref.name] = observe.gone_job(ref.name, ref.task, ref.attempt)
            learnt = True
        return learnt

    # -- acting -----------------------------------------------------------------

    async def _execute(
        self, run: WorkflowRef, memory: RunMemory, decision: Decision
    ) -> list[Refusal]:
        """Execute the actions in order; the ones the API server refused for good."""
        refused: list[Refusal] = []
        concurrent = []
        started = _Start(decision.status, time.monotonic(), memory)
        for action in decision.actions:
            match action:
                case PrepareRun():
                    problem = await self._prepare(run, memory, action)
                    if problem is not None:
                        return [Refusal(action, problem)]
                case GrantReads():
                    await self._grant_reads(run, memory, action)
                case CreateTask():
                    concurrent.append(self._create_task(run, memory, action, refused, started))
                case DeleteJob():
                    concurrent.append(self._delete_job(run, action))
                case Event():
                    pass  # posted once the status is written
                case _:
                    assert_never(action)
        await asyncio.gather(*concurrent)
        return refused

    async def _prepare(self, run: WorkflowRef, memory: RunMemory, action: PrepareRun) -> str | None:
        """Create the run's identity, then its recorded spec; a refusal's message, if any.

        Raises Redecide when the run turns out prepared with another spec.
        """
        creations: list[tuple[Create, Body]] = [
            (self.kube.create_service_account, children.service_account(run, action)),
            (self.kube.create_role, children.role(run, action)),
            (self.kube.create_role_binding, children.role_binding(run, action)),
            (self.kube.create_config_map, children.spec_config_map(run, action)),
        ]
        try:
            fresh = [await self._create(run, create, body) for create, body in creations]
        except _Refused as refusal:
            return str(refusal)
        if fresh[-1]:
            memory.recorded = action.spec
            return None
        memory.recorded = await self._read_recorded(run)
        if memory.recorded is None:
            return f"ConfigMap {action.spec_config_map} exists and is not this run's"
        if spec_hash(memory.recorded) != spec_hash(action.spec):
            raise Redecide()
        return None

    async def _grant_reads(self, run: WorkflowRef, memory: RunMemory, action: GrantReads) -> None:
        """Let the run's pods get the cache entries its tasks were served from (before any
        Job that reads one starts). A stale Role is a 409, retried with the reconcile. The
        Role is read only when an entry is not yet known to be granted."""
        if memory.granted.issuperset(action.config_maps):
            return
        async with self._calls:
            role = await self.kube.read_role(run.namespace, action.service_account)
            if role is None:
                raise ApiError(404, "NotFound", f"Role {action.service_account} is not there yet")
            granting = children.with_cache_reads(role, action.config_maps)
            if granting is not None:
                await self.kube.replace_role(run.namespace, granting)
        memory.granted = memory.granted.union(action.config_maps)

    async def _create(self, run: WorkflowRef, create: Create, body: Body) -> bool:
        """Create a child; whether it is new (False: it existed). _Refused if refused for good."""
        try:
            async with self._calls:
                return await create(run.namespace, body) is not None
        except ApiError as error:
            if error.transient:
                raise
            raise _Refused(
                f"{body['kind']} {body['metadata']['name']}: {error.message or error.reason}"
            ) from None

    async def _create_task(
        self,
        run: WorkflowRef,
        memory: RunMemory,
        action: CreateTask,
        refused: list[Refusal],
        started: _Start,
    ) -> None:
        recorded = memory.recorded
        assert recorded is not None  # PrepareRun ran before any CreateTask, or was read back
        try:
            fresh = await self._create(
                run,
                self.kube.create_job,
                children.task_job(
                    run,
                    action,
                    self.config,
                    self.tracer.task_environment(run, action.task, action.attempt),
                    recorded.inputs_from,
                ),
            )
        except _Refused as refusal:
            refused.append(Refusal(action, str(refusal)))
            return
        if not fresh:
            existing = await self.kube.read_job(run.namespace, action.job_name)
            if existing is not None and not _owned_by(existing, run.uid):
                refused.append(Refusal(action, f"Job {action.job_name} belongs to another object"))
                return
        else:
            self._count_start(run, memory, action, started)
            if action.task_input.cache_entry is not None:
                CACHE_LOOKUPS.labels(run.namespace, "miss").inc()
        ref = JobRef(action.job_name, action.task, action.attempt, action.task_input.agent_name)
        memory.created.setdefault(action.job_name, (ref, time.monotonic()))

    def _count_start(
        self, run: WorkflowRef, memory: RunMemory, action: CreateTask, started: _Start
    ) -> None:
        """The attempt's Job was just created by this call: count it, its wait and latency."""
        since, reason = memory.waiting.get(action.task, (started.decided_at, None))
        dispatch = None
        if action.attempt == 1:
            created = observe.timestamp(memory.body["metadata"].get("creationTimestamp"))
            ready = run_metrics.dag_ready_at(started.task(action.task), started.status, created)
            dispatch = (self.clock() - ready).total_seconds() if ready is not None else None
        self.metrics.attempt_started(
            run.namespace,
            action.task_input.agent_name,
            action.attempt,
            time.monotonic() - since,
            reason,
            dispatch,
        )

    async def _delete_job(self, run: WorkflowRef, action: DeleteJob) -> None:
        async with self._calls:
            await self.kube.delete_job(run.namespace, action.name)

    async def _write_status(
        self, run: WorkflowRef, memory: RunMemory, status: WorkflowStatus
    ) -> None:
        wire = status.to_wire()
        patch = status_patch(memory.body.get("status") or {}, wire)
        if patch:
            written = await self.kube.patch_workflow_status(run.namespace, run.name, patch)
            if self.runs.seen((run.namespace, run.name), written):
                memory.written(written, status, wire)
        for name, job in list(memory.finished.items()):
            if job.state != JobState.GONE and not _needs_report(job.task, job.attempt, status):
                del memory.finished[name]  # status records it; the index still shows the Job


@dataclass
class _Start:
    """What counting an attempt's start needs of the decision that started it."""

    status: WorkflowStatus
    decided_at: float
    memory: RunMemory
    _tasks: dict[str, TaskSpec] | None = None

    def task(self, name: str) -> TaskSpec | None:
        """The task's spec as the run was prepared with it (after PrepareRun ran); an
        instance's is its task's."""
        if self._tasks is None:
            spec = self.memory.recorded
            self._tasks = {task.name: task for task in spec.tasks} if spec else {}
        return self._tasks.get(parent_of(name))


def _agents_of(spec: WorkflowSpec | InvalidSpec | UnresolvedSpec | None) -> dict[str, str]:
    """Each task's named Agent (a supervise task's supervisor): the metrics' ``agent`` label
    of an attempt status does not record the Agent of (one an operator before
    ``tasks.T.agents`` started)."""
    if not isinstance(spec, WorkflowSpec):
        return {}
    return {task.name: agents[0] for task in spec.tasks if (agents := task.named_agents())}


def _priority(spec: WorkflowSpec | InvalidSpec | UnresolvedSpec) -> int:
    """The run's ``spec.priority``, by which it waits for its Tenant's slots (0 without one)."""
    return (spec.priority or 0) if isinstance(spec, WorkflowSpec) else 0


def _run_of(body: Mapping[str, Any]) -> WorkflowRef:
    metadata = body["metadata"]
    return WorkflowRef(metadata["namespace"], metadata["name"], metadata["uid"])


def _ended(status: WorkflowStatus) -> bool:
    return status.phase in ENDED


def _owned_by(body: Body, uid: str) -> bool:
    owners = (body.get("metadata") or {}).get("ownerReferences") or ()
    return any(owner.get("uid") == uid for owner in owners)


def _needs_report(task_name: str, attempt: int, status: WorkflowStatus) -> bool:
    """Whether the core still needs to hear how this attempt went (status does not say yet)."""
    task = status.tasks.get(task_name)
    if task is None or task.attempts < attempt:
        return True
    return task.attempts == attempt and task.phase in (TaskPhase.PENDING, TaskPhase.RUNNING)


def _unseen_record(ref: JobRef, uid: str) -> JobRecord:
    """A Job this operator created that the watch has not shown yet: active."""
    return JobRecord(ref.name, uid, ref.task, ref.attempt, None, None, False, None)
