"""What a task pod is told: its ``TaskInput``, the run's ``WorkflowSpec``, its API key and
the run's inputs (those from Secrets included).

The operator passes the ``TaskInput`` as JSON in an environment variable
(``INPUT_ENV``) and mounts the spec the run started with as a file; ``troupe
run`` and tests may pass the input as a file instead. The task's template and
dependencies come from that spec, never from the input, so the operator never
copies task data. Anything missing or malformed here is a permanent failure
with one line saying what and where: no retry mends a bad input. The key is
taken only from the variable the input names; this module refuses to read it
from anywhere else or to let it into a message. The same holds for an input
the run takes from a Secret: its value comes only from the variable the kubelet
set from the Secret (``api.sources.secret_inputs``), and is scrubbed from every
message, report and preview like a key.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from troupe_agent.failures import TaskFailed
from troupe_agent.scrub import register_secret
from troupe_operator.api import EXIT_PERMANENT, TaskInput, TaskSpec, WorkflowSpec, secret_inputs

Model = TypeVar("Model", bound=BaseModel)


def load_task_input(input_file: Path | None, input_env: str) -> TaskInput:
    """The TaskInput from ``input_file`` when given, else from the variable ``input_env``."""
    if input_file is not None:
        return _parse(TaskInput, _read_file(input_file, "task input"), f"task input {input_file}")
    text = os.environ.get(input_env)
    if text is None:
        raise TaskFailed(
            f"no task input: the environment variable {input_env} is not set", EXIT_PERMANENT
        )
    return _parse(TaskInput, text, f"task input from ${input_env}")


def load_task_spec(spec_file: Path, task: str) -> tuple[WorkflowSpec, TaskSpec]:
    """The run's WorkflowSpec and, in it, the spec of ``task``."""
    spec = _parse(
        WorkflowSpec, _read_file(spec_file, "workflow spec"), f"workflow spec {spec_file}"
    )
    for task_spec in spec.tasks:
        if task_spec.name == task:
            return spec, task_spec
    raise TaskFailed(f"workflow spec {spec_file} has no task '{task}'", EXIT_PERMANENT)


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


def read_inputs(spec: WorkflowSpec) -> dict[str, str]:
    """The run's inputs: the spec's values, and each Secret input from its variable."""
    inputs = dict(spec.inputs)
    for name, source in secret_inputs(spec.inputs_from):
        value = os.environ.get(name)
        if value is None:
            raise TaskFailed(
                f"input '{source.name}' comes from a Secret, but the variable {name} that "
                "carries it is not set",
                EXIT_PERMANENT,
            )
        register_secret(value)
        inputs[source.name] = value
    return inputs


def _read_file(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise TaskFailed(f"cannot read {what} {path}: {reason}", EXIT_PERMANENT) from exc


def _parse(model: type[Model], text: str, source: str) -> Model:
    try:
        return model.model_validate(json.loads(text))
    except json.JSONDecodeError as exc:
        raise TaskFailed(f"{source} is not JSON: {exc}", EXIT_PERMANENT) from exc
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or '(root)'}: "
            + (str(error["ctx"]["error"]) if error["type"] == "value_error" else error["msg"])
            for error in exc.errors()
        )
        raise TaskFailed(f"{source} is invalid: {problems}", EXIT_PERMANENT) from exc
