"""Task mode: run one workflow task, write its output, exit with a code the Job understands.

Exit 0 on success. On failure the exit code tells the operator's Job whether
another attempt can help (``EXIT_RETRYABLE``) or not (``EXIT_PERMANENT``,
which its ``podFailurePolicy`` turns into an immediate failure), and one
scrubbed line saying why goes to the termination log and to stderr.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pydantic import ValidationError

from troupe_agent.agent import run_task
from troupe_agent.errors import ModelCallError
from troupe_agent.scrub import one_line, register_secret
from troupe_operator.api import (
    EXIT_PERMANENT,
    EXIT_RETRYABLE,
    MAX_OUTPUT_BYTES,
    OutputTarget,
    TaskInput,
    TaskResult,
)

log = logging.getLogger(__name__)

_RETRYABLE_KUBE_STATUSES: Final = frozenset({409, 429}) | frozenset(range(500, 600))


class TaskFailed(Exception):
    """A task failure with its exit code; the message is one line for the termination log."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(one_line(message))
        self.exit_code = exit_code


@dataclass(frozen=True)
class TaskOptions:
    input_path: Path
    output_file: Path | None
    termination_log: Path


def run_task_mode(options: TaskOptions) -> int:
    """Run the task the input file describes; the process exit code."""
    try:
        task_input = read_task_input(options.input_path)
        api_key = read_api_key(task_input)
        text, result = _run(task_input, api_key)
        check_output_size(text)
        write_output(task_input, text, result, options.output_file)
    except Exception as exc:
        failure = (
            exc
            if isinstance(exc, TaskFailed)  # a bug or an unforeseen library error otherwise
            else TaskFailed(f"unexpected {type(exc).__name__}: {exc}", EXIT_RETRYABLE)
        )
        report_failure(str(failure), options.termination_log)
        return failure.exit_code
    log.info(
        "task %s/%s attempt %d done: %d bytes, model %s, %d calls, %d tokens",
        task_input.workflow,
        task_input.task,
        task_input.attempt,
        result.bytes,
        result.model,
        result.calls,
        result.usage.total_tokens,
    )
    return 0


def read_task_input(path: Path) -> TaskInput:
    try:
        return TaskInput.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except OSError as exc:
        raise TaskFailed(f"cannot read task input {path}: {exc.strerror}", EXIT_PERMANENT) from exc
    except json.JSONDecodeError as exc:
        raise TaskFailed(f"task input {path} is not JSON: {exc}", EXIT_PERMANENT) from exc
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or '(root)'}: {error['msg']}"
            for error in exc.errors()
        )
        raise TaskFailed(f"task input {path} is invalid: {problems}", EXIT_PERMANENT) from exc


def read_api_key(task_input: TaskInput) -> str | None:
    """The key from the environment variable the input names; it must be set and non-empty."""
    if task_input.api_key_env is None:
        return None
    api_key = os.environ.get(task_input.api_key_env, "")
    if not api_key:
        raise TaskFailed(
            f'agent "{task_input.agent_name}": the API key variable '
            f"{task_input.api_key_env} is not set or empty",
            EXIT_PERMANENT,
        )
    register_secret(api_key)
    return api_key


def _run(task_input: TaskInput, api_key: str | None) -> tuple[str, TaskResult]:
    try:
        return run_task(task_input, api_key)
    except ModelCallError as exc:
        raise TaskFailed(str(exc), EXIT_RETRYABLE if exc.retryable else EXIT_PERMANENT) from exc


def check_output_size(text: str) -> None:
    size = len(text.encode())
    if size > MAX_OUTPUT_BYTES:
        raise TaskFailed(
            f"output is {size} bytes, more than the {MAX_OUTPUT_BYTES}-byte limit of an output "
            "ConfigMap; it was refused, not truncated (ask the agent for a shorter answer)",
            EXIT_PERMANENT,
        )


def write_output(
    task_input: TaskInput, text: str, result: TaskResult, output_file: Path | None
) -> None:
    """Write to ``output_file`` when given, else to the input's output ConfigMap."""
    if output_file is not None:
        _write_file(output_file, text, result)
    elif task_input.output is not None:
        _write_config_map(task_input.output, text, result)
    else:
        raise TaskFailed(
            "nowhere to write the output: the input has no output ConfigMap and no "
            "--output-file was given",
            EXIT_PERMANENT,
        )


def _write_file(path: Path, text: str, result: TaskResult) -> None:
    try:
        path.write_text(json.dumps({**result.to_wire(), "output": text}), encoding="utf-8")
    except OSError as exc:
        raise TaskFailed(
            f"cannot write output file {path}: {exc.strerror}", EXIT_PERMANENT
        ) from exc


def _write_config_map(target: OutputTarget, text: str, result: TaskResult) -> None:
    from troupe_agent.output_configmap import write_output_config_map

    try:
        write_output_config_map(target, text, result)
    except Exception as exc:
        status = getattr(exc, "status", None)
        retryable = not isinstance(status, int) or status in _RETRYABLE_KUBE_STATUSES
        reason = f"HTTP {status} {getattr(exc, 'reason', '')}" if status else str(exc)
        raise TaskFailed(
            f"cannot write output ConfigMap {target.namespace}/{target.config_map}: {reason}",
            EXIT_RETRYABLE if retryable else EXIT_PERMANENT,
        ) from exc


def report_failure(message: str, termination_log: Path) -> None:
    """Say why the task failed: on stderr and in the pod's termination message."""
    log.error("task failed: %s", message)
    with contextlib.suppress(OSError):
        termination_log.write_text(message + "\n", encoding="utf-8")
