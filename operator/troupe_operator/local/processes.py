"""Task attempts as local processes, seen by the core as if they were Jobs.

Plays the Job controller and kubelet for ``troupe run``: starts the agent
runtime's task mode with the attempt's input file, kills it at its active
deadline or on request, and reports each attempt as an ObservedJob, with the
termination log as its failure message and EXIT_PERMANENT as a permanent
failure. API keys reach a process only as the variable its input names.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from pydantic import ValidationError

from troupe_operator.api import EXIT_PERMANENT, INPUT_KEY, TaskResult
from troupe_operator.workflow import CreateTask, JobState, ObservedJob, TaskOutput

SCRUBBED_ENV: Final = ("OPENAI_API_KEY",)
"""Variables a task must not inherit: its key comes only as the variable its input names."""


@dataclass
class _Attempt:
    action: CreateTask
    directory: Path
    started_at: datetime
    process: asyncio.subprocess.Process | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    deadline_exceeded: bool = False
    deleted: bool = False
    failure: str | None = None
    output: TaskOutput | None = field(default=None, repr=False)

    @property
    def result_path(self) -> Path:
        return self.directory / "result.json"

    @property
    def termination_log(self) -> Path:
        return self.directory / "termination-log"


class LocalJobs:
    """The attempts of one Workflow, run as child processes under a scratch directory."""

    def __init__(
        self,
        command: Sequence[str],
        scratch: Path,
        api_keys: Mapping[str, str],
        on_change: Callable[[], None],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.command = list(command)
        self.scratch = scratch
        self.api_keys = api_keys
        self.on_change = on_change
        self.clock = clock
        self.attempts: dict[str, _Attempt] = {}
        self.supervisors: set[asyncio.Task[None]] = set()

    def start(self, action: CreateTask) -> None:
        """Start the attempt unless it exists already (as creating a Job would say)."""
        if action.job_name in self.attempts:
            return
        directory = self.scratch / action.job_name
        directory.mkdir(parents=True, exist_ok=True)
        local_input = action.task_input.model_copy(update={"output": None})
        (directory / INPUT_KEY).write_text(json.dumps(local_input.to_wire()), encoding="utf-8")
        attempt = _Attempt(action, directory, self.clock())
        self.attempts[action.job_name] = attempt
        supervisor = asyncio.create_task(self._supervise(attempt))
        self.supervisors.add(supervisor)
        supervisor.add_done_callback(self.supervisors.discard)

    def delete(self, job_name: str) -> None:
        """Kill the attempt's process; like a deleted Job, it is gone from then on."""
        attempt = self.attempts.get(job_name)
        if attempt is not None:
            attempt.deleted = True
            _kill(attempt.process)

    def kill_all(self) -> None:
        for attempt in self.attempts.values():
            _kill(attempt.process)

    def observed(self) -> list[ObservedJob]:
        return [_observe(attempt) for attempt in self.attempts.values() if not attempt.deleted]

    def outputs(self) -> dict[str, TaskOutput]:
        return {
            attempt.action.task: attempt.output
            for attempt in self.attempts.values()
            if attempt.output is not None
        }

    async def _supervise(self, attempt: _Attempt) -> None:
        action = attempt.action
        argv = [
            *self.command,
            "--input",
            str(attempt.directory / INPUT_KEY),
            "--output-file",
            str(attempt.result_path),
            "--termination-log",
            str(attempt.termination_log),
        ]
        try:
            attempt.process = await asyncio.create_subprocess_exec(
                *argv,
                env=self._environment(action),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
                start_new_session=True,
            )
            deadline = action.active_deadline_seconds
            try:
                attempt.exit_code = await asyncio.wait_for(attempt.process.wait(), deadline)
            except TimeoutError:
                attempt.deadline_exceeded = True
                _kill(attempt.process)
                attempt.exit_code = await attempt.process.wait()
        except OSError as error:
            attempt.failure = f"cannot start the task command {argv[0]}: {error.strerror}"
            attempt.exit_code = EXIT_PERMANENT
        finally:
            attempt.finished_at = self.clock()
        if attempt.exit_code == 0:
            attempt.output = _read_output(attempt)
        self.on_change()

    def _environment(self, action: CreateTask) -> dict[str, str]:
        environment = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
        name = action.task_input.api_key_env
        if name:
            environment.pop(name, None)
            key = self.api_keys.get(action.agent_name)
            if key:
                environment[name] = key
        return environment


def _observe(attempt: _Attempt) -> ObservedJob:
    action = attempt.action
    if attempt.finished_at is None:
        state = JobState.ACTIVE
    elif attempt.exit_code == 0:
        state = JobState.SUCCEEDED
    else:
        state = JobState.FAILED
    return ObservedJob(
        name=action.job_name,
        task=action.task,
        attempt=action.attempt,
        state=state,
        started_at=attempt.started_at,
        finished_at=attempt.finished_at,
        message=_failure_message(attempt) if state == JobState.FAILED else None,
        permanent=attempt.exit_code == EXIT_PERMANENT,
        deadline_exceeded=attempt.deadline_exceeded,
    )


def _failure_message(attempt: _Attempt) -> str:
    if attempt.failure:
        return attempt.failure
    with contextlib.suppress(OSError, UnicodeDecodeError):
        text = attempt.termination_log.read_text(encoding="utf-8").strip()
        if text:
            return text
    return f"the task process exited with code {attempt.exit_code}"


def _read_output(attempt: _Attempt) -> TaskOutput | None:
    """The result file as a TaskOutput; None (a missing output) when it is absent or bad."""
    try:
        wire = json.loads(attempt.result_path.read_text(encoding="utf-8"))
        text = wire.pop("output")
        return TaskOutput(str(text), TaskResult.model_validate(wire))
    except (OSError, ValueError, KeyError, TypeError, ValidationError):
        return None


def _kill(process: asyncio.subprocess.Process | None) -> None:
    """Kill a task and whatever it started (it leads its own process group)."""
    if process is None or process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
