"""The local control loop: observe the local attempts, ask the core, execute its decision.

The same level-triggered loop the operator runs, with processes for Jobs, a
dict for the API server and the wall clock for ``now``. It wakes when an
attempt ends, when the core's ``requeue_after`` passes, and at least every
second as a safety net, and stops when the run is Succeeded or Failed.

The Workflows of one run share two things the operator does not have: a
bound on task processes across all of them (the core is told each run's
share of the free slots, shared as a Tenant's are, by ``tenants.slots``:
higher ``spec.priority`` first, aged while a run waits, then fewest running,
then longest waiting; a task waiting for one stays Pending; any attempt
ending wakes every Workflow), each Agent's ``model.maxConcurrency``, shared
the same way (fixed here: ``adaptiveConcurrency`` is the operator's), and
SIGINT/SIGTERM, on which each run is stopped by the core (reason
Interrupted), every process killed and waited for, and what was decided
written out before the scratch directory goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, assert_never

from troupe_operator.api import (
    OUTPUT_KEY,
    CacheTarget,
    TaskPhase,
    WorkflowPhase,
    WorkflowSpec,
    WorkflowStatus,
)
from troupe_operator.local.cache_dir import LocalCache
from troupe_operator.local.interrupts import stop_signals
from troupe_operator.local.outputs import confined, write_workflow
from troupe_operator.local.plan import LocalWorkflow, RunPlan
from troupe_operator.local.processes import LocalJobs
from troupe_operator.local.view import ProgressView
from troupe_operator.tenants.slots import Claim, share
from troupe_operator.workflow import (
    Action,
    CreateTask,
    DeleteJob,
    Event,
    GrantReads,
    JobState,
    Observation,
    PrepareRun,
    WorkflowRef,
    reconcile,
)

DEFAULT_TASK_COMMAND: Final = (sys.executable, "-m", "troupe_agent", "task")
RESYNC_SECONDS: Final = 1.0
ENDED: Final = frozenset({WorkflowPhase.SUCCEEDED, WorkflowPhase.FAILED, WorkflowPhase.ERROR})

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class RunOutcome:
    statuses: dict[str, WorkflowStatus]
    """Each Workflow's final status, by name."""
    stopped_by: signal.Signals | None = None


async def run_plan(
    plan: RunPlan,
    output_dir: Path,
    view: ProgressView,
    parallelism: int,
    task_command: Sequence[str] = DEFAULT_TASK_COMMAND,
    clock: Clock = lambda: datetime.now(UTC),
    cache: LocalCache | None = None,
) -> RunOutcome:
    """Run every Workflow of the plan at once, at most ``parallelism`` task processes in all;
    memoized tasks are served from and cached in ``cache``."""
    shared = _Shared(parallelism, clock, cache)
    with stop_signals(shared.stop), tempfile.TemporaryDirectory(prefix="troupe-run-") as scratch:
        shared.runs = [
            _WorkflowRun(
                workflow, confined(Path(scratch), workflow.name), task_command, view, clock, shared
            )
            for workflow in plan.workflows
        ]
        try:
            statuses = await asyncio.gather(*(run.run() for run in shared.runs))
        finally:
            for run in shared.runs:
                await run.stop()
        for run, status in zip(shared.runs, statuses, strict=True):
            run.write(output_dir, status)
    names = [run.workflow.name for run in shared.runs]
    return RunOutcome(dict(zip(names, statuses, strict=True)), shared.stopped_by)


class _Shared:
    """What the Workflows of one run share: the bound on task processes, wake-ups, the stop."""

    def __init__(self, parallelism: int, clock: Clock, cache: LocalCache | None = None) -> None:
        self.cache = cache
        self.parallelism = parallelism
        self.clock = clock
        self.runs: list[_WorkflowRun] = []
        self.stopped_by: signal.Signals | None = None

    def free_slots(self, asking: _WorkflowRun) -> int:
        """How many attempts ``asking`` may start now: its share of the free slots."""
        now = self.clock().timestamp()
        claims = {run.key: run.claim(now) for run in self.runs if run is not asking}
        claims[asking.key] = replace(asking.claim(now), wants=self.parallelism)
        return share(self.parallelism, claims, now).get(asking.key, 0)

    def agent_slots(self, asking: _WorkflowRun) -> dict[str, int]:
        """How many attempts ``asking`` may start now on each Agent it knows with a cap."""
        now = self.clock().timestamp()
        free = {}
        for name, agent in asking.workflow.agents.items():
            cap = agent.model.max_concurrency
            if cap is None:
                continue
            claims = {run.key: run.agent_claim(name, now) for run in self.runs}
            claims[asking.key] = replace(claims[asking.key], wants=cap)
            free[name] = share(cap, claims, now).get(asking.key, 0)
        return free

    def wake_all(self) -> None:
        """A slot may be free, or the run must stop: every Workflow looks again."""
        for run in self.runs:
            run.changed.set()

    def stop(self, signum: signal.Signals) -> None:
        self.stopped_by = self.stopped_by or signum
        self.wake_all()

    @property
    def stop_reason(self) -> str | None:
        return f"interrupted by {self.stopped_by.name}" if self.stopped_by else None


class _WorkflowRun:
    def __init__(
        self,
        workflow: LocalWorkflow,
        scratch: Path,
        task_command: Sequence[str],
        view: ProgressView,
        clock: Clock,
        shared: _Shared,
    ) -> None:
        self.workflow = workflow
        self.ref = WorkflowRef(workflow.namespace, workflow.name, f"local-{workflow.name}")
        self.view = view
        self.clock = clock
        self.shared = shared
        self.changed = asyncio.Event()
        self.spec_file = scratch / "spec.json"
        self.jobs = LocalJobs(
            task_command,
            scratch,
            self.spec_file,
            scratch / "outputs",
            workflow.api_keys,
            shared.wake_all,
            clock,
            workflow.secret_inputs,
        )
        self.recorded: WorkflowSpec | None = None
        self.caching: dict[str, CacheTarget] = {}
        """Jobs of memoized units, with where their output is to be cached."""
        self.held = 0
        """Attempts the shell's slots held back at the last decision."""
        self.held_since: float | None = None
        self.held_by_agent: dict[str, tuple[int, float]] = {}
        """Attempts each Agent's cap held back at the last decision, and since when."""

    @property
    def key(self) -> tuple[str, str]:
        return self.ref.namespace, self.ref.name

    @property
    def priority(self) -> int:
        return self.workflow.spec.priority or 0

    def claim(self, now: float) -> Claim:
        """What this run asks of the shared slots, as of its last decision."""
        since = self.held_since if self.held_since is not None else now
        return Claim(self.jobs.live(), self.held, since, self.priority)

    def agent_claim(self, agent: str, now: float) -> Claim:
        """What this run asks of ``agent``'s slots, as of its last decision."""
        held, since = self.held_by_agent.get(agent, (0, now))
        return Claim(self.jobs.live(agent), held, since, self.priority)

    async def run(self) -> WorkflowStatus:
        status = WorkflowStatus()
        while True:
            self.changed.clear()
            decision = reconcile(self._observe(status))
            self.held = decision.held_back
            if not self.held:
                self.held_since = None
            elif self.held_since is None:
                self.held_since = self.clock().timestamp()
            now = self.clock().timestamp()
            self.held_by_agent = {
                agent: (count, self.held_by_agent.get(agent, (0, now))[1])
                for agent, count in decision.held_by_agent.items()
            }
            status = decision.status
            self._expose_cached(status)
            self.view.show(self.workflow.name, status, self._execute(decision.actions))
            if status.phase in ENDED:
                return status
            wait = (
                min(decision.requeue_after, RESYNC_SECONDS)
                if decision.requeue_after is not None
                else RESYNC_SECONDS
            )
            # asyncio.timeout, not wait_for: in Python 3.11 wait_for loses a cancellation
            # that arrives as the awaited event is set, and the run would go on.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self.changed.wait()

    def _observe(self, status: WorkflowStatus) -> Observation:
        jobs = self.jobs.observed()
        cache = self.shared.cache
        for job in jobs:
            target = self.caching.get(job.name)
            if cache and target and job.state == JobState.SUCCEEDED and job.report:
                output = self.jobs.output_file(self.ref.output_config_map(job.task))
                cache.store(self.ref.namespace, target, output, job.report)
                del self.caching[job.name]
        return Observation(
            namespace=self.ref.namespace,
            name=self.ref.name,
            uid=self.ref.uid,
            generation=1,
            spec=self.workflow.spec,
            status=status,
            now=self.clock(),
            jobs=jobs,
            agents=self.workflow.agents,
            agent_profiles=self.workflow.profiles,
            recorded_spec=self.recorded,
            free_slots=self.shared.free_slots(self),
            agent_slots=self.shared.agent_slots(self),
            stop=self.shared.stop_reason,
            resolved_from=self.workflow.resolved_from,
            cache=cache.entries(self.ref.namespace) if cache else {},
        )

    def _expose_cached(self, status: WorkflowStatus) -> None:
        """Every output served from the cache, where the task processes and ``write`` read."""
        cache = self.shared.cache
        for task in status.tasks.values():
            if cache is not None and task.cached is not None:
                cache.expose(self.ref.namespace, task.cached.entry, self.jobs.outputs)

    def _execute(self, actions: Sequence[Action]) -> list[Event]:
        events = []
        for action in actions:
            match action:
                case PrepareRun():
                    self._prepare(action)
                case GrantReads():
                    pass  # the entries are copied where tasks read (_expose_cached)
                case CreateTask():
                    if action.task_input.cache_entry is not None:
                        self.caching[action.job_name] = action.task_input.cache_entry
                    self.jobs.start(action)
                case DeleteJob():
                    self.jobs.delete(action.name)
                case Event():
                    events.append(action)
                case _:
                    assert_never(action)
        return events

    def _prepare(self, action: PrepareRun) -> None:
        """Record the spec where every task of the run reads it, as the mounted ConfigMap."""
        self.spec_file.parent.mkdir(parents=True, exist_ok=True)
        self.spec_file.write_text(
            action.spec.model_dump_json(by_alias=True, exclude_none=True), encoding="utf-8"
        )
        self.jobs.outputs.mkdir(parents=True, exist_ok=True)
        self.recorded = action.spec

    async def stop(self) -> None:
        """Kill what still runs and wait for its supervisors to see it end."""
        self.jobs.delete_all()
        await asyncio.gather(*self.jobs.supervisors, return_exceptions=True)

    def write(self, output_dir: Path, status: WorkflowStatus) -> None:
        """``<task>.md`` for every succeeded task and unit (``<task>.<suffix>.md``; for a task
        whose output is a unit's, the winning candidate's say, that unit's), stale ones
        removed, and ``status.json``."""
        names = dict.fromkeys([*(task.name for task in self.workflow.spec.tasks), *status.tasks])
        outputs = {}
        for name in names:
            task = status.tasks.get(name)
            succeeded = task is not None and task.phase == TaskPhase.SUCCEEDED
            outputs[name] = (
                self._output(task.result_of or name, status) if task and succeeded else None
            )
        write_workflow(output_dir, self.workflow.name, outputs, status)

    def _output(self, task: str, status: WorkflowStatus) -> str | None:
        """A succeeded unit's output text (a parent's: its result's), from the file its
        process wrote, or the copy of the cache entry it was served from."""
        cached = status.tasks[task].cached if task in status.tasks else None
        name = cached.entry if cached is not None else self.ref.output_config_map(task)
        path = self.jobs.output_file(name)
        try:
            text = json.loads(path.read_text(encoding="utf-8")).get(OUTPUT_KEY)
        except (OSError, ValueError, AttributeError):
            return None
        return text if isinstance(text, str) else None
