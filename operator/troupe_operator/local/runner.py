"""The local control loop: observe the local attempts, ask the core, execute its decision.

The same level-triggered loop the operator runs, with processes for Jobs, a
dict for the API server and the wall clock for ``now``. It wakes when an
attempt ends, when the core's ``requeue_after`` passes, and at least every
second as a safety net, and stops when the run is Succeeded or Failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import tempfile
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from troupe_operator.api import TaskPhase, WorkflowPhase, WorkflowSpec, WorkflowStatus
from troupe_operator.local.plan import LocalWorkflow, RunPlan
from troupe_operator.local.processes import LocalJobs
from troupe_operator.local.view import ProgressView
from troupe_operator.workflow import (
    Action,
    CreateTask,
    DeleteJob,
    Event,
    Observation,
    RecordSpec,
    TaskOutput,
    reconcile,
)

DEFAULT_TASK_COMMAND: Final = (sys.executable, "-m", "troupe_agent", "task")
RESYNC_SECONDS: Final = 1.0
ENDED: Final = frozenset({WorkflowPhase.SUCCEEDED, WorkflowPhase.FAILED, WorkflowPhase.ERROR})

Clock = Callable[[], datetime]


async def run_plan(
    plan: RunPlan,
    output_dir: Path,
    view: ProgressView,
    task_command: Sequence[str] = DEFAULT_TASK_COMMAND,
    clock: Clock = lambda: datetime.now(UTC),
) -> dict[str, WorkflowStatus]:
    """Run every Workflow of the plan at once; their final statuses, by name."""
    with tempfile.TemporaryDirectory(prefix="troupe-run-") as scratch:
        runs = [
            _WorkflowRun(workflow, Path(scratch) / workflow.name, task_command, view, clock)
            for workflow in plan.workflows
        ]
        try:
            statuses = await asyncio.gather(*(run.run() for run in runs))
        finally:
            for run in runs:
                await run.stop()
    for run, status in zip(runs, statuses, strict=True):
        run.write(output_dir / run.workflow.name, status)
    return {run.workflow.name: status for run, status in zip(runs, statuses, strict=True)}


class _WorkflowRun:
    def __init__(
        self,
        workflow: LocalWorkflow,
        scratch: Path,
        task_command: Sequence[str],
        view: ProgressView,
        clock: Clock,
    ) -> None:
        self.workflow = workflow
        self.view = view
        self.clock = clock
        self.changed = asyncio.Event()
        self.jobs = LocalJobs(task_command, scratch, workflow.api_keys, self.changed.set, clock)
        self.recorded: WorkflowSpec | None = None

    async def run(self) -> WorkflowStatus:
        status = WorkflowStatus()
        while True:
            self.changed.clear()
            decision = reconcile(self._observe(status))
            status = decision.status
            self.view.show(self.workflow.name, status, self._execute(decision.actions))
            if status.phase in ENDED:
                return status
            wait = (
                min(decision.requeue_after, RESYNC_SECONDS)
                if decision.requeue_after is not None
                else RESYNC_SECONDS
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), wait)

    def _observe(self, status: WorkflowStatus) -> Observation:
        return Observation(
            namespace=self.workflow.namespace,
            name=self.workflow.name,
            uid=f"local-{self.workflow.name}",
            generation=1,
            spec=self.workflow.spec,
            status=status,
            now=self.clock(),
            jobs=self.jobs.observed(),
            outputs=self.jobs.outputs(),
            agents=self.workflow.agents,
            recorded_spec=self.recorded,
        )

    def _execute(self, actions: Sequence[Action]) -> list[Event]:
        events = []
        for action in actions:
            if isinstance(action, CreateTask):
                self.jobs.start(action)
            elif isinstance(action, DeleteJob):
                self.jobs.delete(action.name)
            elif isinstance(action, RecordSpec):
                self.recorded = action.spec
            elif isinstance(action, Event):
                events.append(action)
        return events

    async def stop(self) -> None:
        """Kill what still runs and wait for its supervisors to notice."""
        self.jobs.kill_all()
        await asyncio.gather(*self.jobs.supervisors, return_exceptions=True)

    def write(self, directory: Path, status: WorkflowStatus) -> None:
        """``<task>.md`` for every succeeded task (stale ones removed), and ``status.json``."""
        directory.mkdir(parents=True, exist_ok=True)
        outputs: dict[str, TaskOutput] = self.jobs.outputs()
        for task in self.workflow.spec.tasks:
            path = directory / f"{task.name}.md"
            state = status.tasks.get(task.name)
            if state is not None and state.phase == TaskPhase.SUCCEEDED and task.name in outputs:
                path.write_text(outputs[task.name].text, encoding="utf-8")
            else:
                path.unlink(missing_ok=True)
        wire = json.dumps(status.to_wire(), indent=2) + "\n"
        (directory / "status.json").write_text(wire, encoding="utf-8")
