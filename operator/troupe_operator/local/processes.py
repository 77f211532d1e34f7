"""Task attempts as local processes, seen by the core as if they were Jobs.

Plays the Job controller and kubelet for ``troupe run``: starts the agent
runtime's task mode with the attempt's input, the run's recorded spec and
the directory of the run's outputs (the local stand-in for its output
ConfigMaps, which the task reads and writes itself), kills it at its active
deadline or on request, and reports each attempt as an ObservedJob with the
report the task left in its termination log, EXIT_PERMANENT making a failure
permanent. Nothing here reads a task's output: only ``troupe run``'s final
write-out does. API keys reach a process only as the variable its input names, and
inputs from Secrets only as the variables ``api.sources.secret_inputs`` names.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from troupe_operator.api import EXIT_PERMANENT, TaskReport
from troupe_operator.api.sources import SECRET_INPUT_ENV_PREFIX
from troupe_operator.workflow import CreateTask, JobState, ObservedJob

INPUT_FILE: Final = "input.json"

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

    @property
    def termination_log(self) -> Path:
        return self.directory / "termination-log"


class LocalJobs:
    """The attempts of one Workflow, run as child processes under a scratch directory."""

    def __init__(
        self,
        command: Sequence[str],
        scratch: Path,
        spec_file: Path,
        outputs: Path,
        api_keys: Mapping[str, str],
        on_change: Callable[[], None],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        secret_inputs: Mapping[str, str] | None = None,
    ) -> None:
        self.command = list(command)
        self.scratch = scratch
        self.spec_file = spec_file
        self.outputs = outputs
        self.api_keys = api_keys
        self.secret_inputs = secret_inputs or {}
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
        (directory / INPUT_FILE).write_text(json.dumps(local_input.to_wire()), encoding="utf-8")
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

    def delete_all(self) -> None:
        for job_name in self.attempts:
            self.delete(job_name)

    def live(self, agent: str | None = None) -> int:
        """Attempts whose process is starting, running or not yet reaped (on ``agent``)."""
        return sum(
            1
            for attempt in self.attempts.values()
            if attempt.finished_at is None and agent in (None, attempt.action.task_input.agent_name)
        )

    def observed(self) -> list[ObservedJob]:
        return [_observe(attempt) for attempt in self.attempts.values() if not attempt.deleted]

    def output_file(self, config_map: str) -> Path:
        """Where the task whose output ConfigMap would be ``config_map`` writes its output."""
        return self.outputs / f"{config_map}.json"

    async def _supervise(self, attempt: _Attempt) -> None:
        action = attempt.action
        target = action.task_input.output
        argv = [
            *self.command,
            "--input",
            str(attempt.directory / INPUT_FILE),
            "--spec",
            str(self.spec_file),
            "--outputs-dir",
            str(self.outputs),
            "--termination-log",
            str(attempt.termination_log),
        ]
        if target is not None:
            argv += ["--output-file", str(self.output_file(target.config_map))]
        try:
            attempt.process = await asyncio.create_subprocess_exec(
                *argv,
                env=self._environment(action),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
                start_new_session=True,
            )
            if attempt.deleted:  # while it was starting
                _kill(attempt.process)
            deadline = action.active_deadline_seconds
            try:
                async with asyncio.timeout(deadline):  # not wait_for: it can lose a cancellation
                    attempt.exit_code = await attempt.process.wait()
            except TimeoutError:
                attempt.deadline_exceeded = True
                _kill(attempt.process)
                attempt.exit_code = await attempt.process.wait()
        except OSError as error:
            attempt.failure = f"cannot start the task command {argv[0]}: {error.strerror}"
            attempt.exit_code = EXIT_PERMANENT
        finally:
            attempt.finished_at = self.clock()
        self.on_change()

    def _environment(self, action: CreateTask) -> dict[str, str]:
        environment = {
            k: v
            for k, v in os.environ.items()
            if k not in SCRUBBED_ENV and not k.startswith(SECRET_INPUT_ENV_PREFIX)
        }
        environment.update(self.secret_inputs)
        name = action.task_input.api_key_env
        if name:
            environment.pop(name, None)
            key = self.api_keys.get(action.task_input.agent_name)
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
    text = _termination_text(attempt) if state != JobState.ACTIVE else ""
    report = TaskReport.decode(text) if text else None
    return ObservedJob(
        name=action.job_name,
        task=action.task,
        attempt=action.attempt,
        state=state,
        started_at=attempt.started_at,
        finished_at=attempt.finished_at,
        message=_failure_message(attempt, text) if state == JobState.FAILED else None,
        permanent=attempt.exit_code == EXIT_PERMANENT,
        deadline_exceeded=attempt.deadline_exceeded,
        report=report,
        agent=action.task_input.agent_name,
    )


def _termination_text(attempt: _Attempt) -> str:
    with contextlib.suppress(OSError, UnicodeDecodeError):
        return attempt.termination_log.read_text(encoding="utf-8").strip()
    return ""


def _failure_message(attempt: _Attempt, text: str) -> str:
    if attempt.failure:
        return attempt.failure
    return text or f"the task process exited with code {attempt.exit_code}"


def _kill(process: asyncio.subprocess.Process | None) -> None:
    """Kill a task and whatever it started (it leads its own process group)."""
    if process is None or process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
