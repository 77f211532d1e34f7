"""The ``troupe run`` command from parsed arguments to exit code.

Exit codes: 0 every Workflow succeeded, 1 one failed, 2 bad input (said in
one line per problem, like ``troupe validate``; the output directories are
part of the input, so nothing runs when they cannot take the results), and
``128 + N`` when signal N stopped the run: 130 for SIGINT, 143 for SIGTERM
(every task process killed first, status.json saying what was interrupted).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from rich.console import Console

from troupe_operator.api import WorkflowPhase, WorkflowStatus
from troupe_operator.local.cache_dir import LocalCache, default_directory
from troupe_operator.local.interrupts import exit_code
from troupe_operator.local.outputs import prepare_output_dirs
from troupe_operator.local.parallelism import TASK_MEMORY_BYTES, machine_parallelism
from troupe_operator.local.plan import RunInputError, RunPlan, plan_run
from troupe_operator.local.runner import DEFAULT_TASK_COMMAND, run_plan
from troupe_operator.local.view import make_view

EXIT_SUCCEEDED: Final = 0
EXIT_FAILED: Final = 1
EXIT_BAD_INPUT: Final = 2

SCRIPTED_NOTE: Final = (
    "Agents without model.baseURL use the offline scripted model: placeholder text, no LLM called"
)


def run_command(
    files: Sequence[str],
    overrides: Sequence[str] = (),
    output_dir: str = "troupe-output",
    only: str | None = None,
    parallelism: int | None = None,
    task_command: Sequence[str] = DEFAULT_TASK_COMMAND,
    console: Console | None = None,
    cache_dir: str | None = None,
) -> int:
    directory = Path(output_dir)
    cache = LocalCache(Path(cache_dir) if cache_dir else default_directory(), datetime.now(UTC))
    try:
        plan = plan_run(files, overrides, only)
        for line in plan.warnings:
            print(line, file=sys.stderr)
        problems = prepare_output_dirs(directory, [workflow.name for workflow in plan.workflows])
        if problems:
            raise RunInputError(problems)
    except RunInputError as error:
        for line in error.lines:
            print(line, file=sys.stderr)
        return EXIT_BAD_INPUT
    console = console or Console()
    scripted = sorted({agent for wf in plan.workflows for agent in wf.scripted_agents})
    if scripted:
        _note(console, f"{SCRIPTED_NOTE} ({', '.join(scripted)})")
    bound = parallelism or machine_parallelism()
    if parallelism is None and sum(len(wf.spec.tasks) for wf in plan.workflows) > bound:
        per_task = TASK_MEMORY_BYTES // 2**20
        _note(
            console,
            f"At most {bound} tasks run at once, this machine's default: min(CPUs, available "
            f"memory / {per_task} MiB); --parallelism N sets another bound",
        )
    view = make_view(console)
    outcome = asyncio.run(run_plan(plan, directory, view, bound, task_command, cache=cache))
    view.close(outcome.statuses)
    _summarise(console, plan, outcome.statuses, directory)
    if outcome.stopped_by is not None:
        print(
            f"interrupted by {outcome.stopped_by.name}: every task process was killed; "
            "status.json says which tasks were cancelled",
            file=sys.stderr,
        )
        return exit_code(outcome.stopped_by)
    succeeded = all(s.phase == WorkflowPhase.SUCCEEDED for s in outcome.statuses.values())
    return EXIT_SUCCEEDED if succeeded else EXIT_FAILED


def _note(console: Console, line: str) -> None:
    console.print(line, markup=False, highlight=False, soft_wrap=True)


def _summarise(
    console: Console, plan: RunPlan, statuses: dict[str, WorkflowStatus], directory: Path
) -> None:
    for workflow in plan.workflows:
        status = statuses[workflow.name]
        phase = status.phase.value if status.phase else "?"
        tokens = status.usage.total_tokens if status.usage else 0
        line = (
            f"{workflow.name}: {phase}, {status.progress} tasks in {status.duration or '0s'}, "
            f"{tokens} tokens; outputs in {directory / workflow.name}"
        )
        if status.phase != WorkflowPhase.SUCCEEDED and status.message:
            line += f" ({status.message})"
        _note(console, line)
