"""Task mode: run one workflow task in its pod, from references to a written output.

The steps, each in its own module: read the ``TaskInput`` and the run's spec
(``task_sources``); read each upstream output once, from its ConfigMap or,
under ``troupe run``, from ``--outputs-dir`` (``output_configmap``,
``output_file``); render the prompt within the pod's limits (``task_prompt``);
run the agent (``agent``; with an ``outputSchema``, one structured call checked against
it, ``structured``; a judge scores the candidates' outputs, ``judging``; a unit of a
``supervise`` task, a supervisor turn or a delegation, ``supervise``); write the output
(ConfigMap or ``--output-file``); and always end with a ``TaskReport`` in the termination
log (``task_report``), which carries the fields of a structured output that the run's
conditions read, the lengths of the lists forEach tasks expand over, a judge's scores, or a
supervisor turn's decision.

Exit 0 on success. On failure the exit code tells the Job whether another
attempt can help (``EXIT_RETRYABLE``) or not (``EXIT_PERMANENT``, which its
``podFailurePolicy`` turns into an immediate failure); the report carries one
scrubbed line saying why and, once the model was called, what was spent.
This module refuses to decide any of that itself: each step raises
:class:`~troupe_agent.failures.TaskFailed` with its own verdict, and anything
else is an unforeseen error, reported as retryable.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from troupe_agent.agent import AgentOptions, run_structured_task, run_task
from troupe_agent.errors import ModelCallError
from troupe_agent.failures import TaskFailed
from troupe_agent.judging import judge_candidates
from troupe_agent.output_file import OutputFiles, write_output_file
from troupe_agent.prompts import TaskPrompt
from troupe_agent.retry import Deadline
from troupe_agent.structured import condition_fields, list_lengths
from troupe_agent.supervise import run_supervise_step
from troupe_agent.task_prompt import build_task_prompt, render_values
from troupe_agent.task_report import failure_report, success_report, write_report
from troupe_agent.task_sources import load_task_input, load_task_spec, read_api_key, read_inputs
from troupe_agent.usage import UsageTally
from troupe_operator.api import (
    EXIT_PERMANENT,
    EXIT_RETRYABLE,
    MAX_OUTPUT_BYTES,
    OutputTarget,
    TaskReport,
    TaskResult,
    counted_lists,
)
from troupe_operator.api.workflow import instance_key
from troupe_operator.expressions import fields_read
from troupe_operator.templates import join_outputs

if TYPE_CHECKING:
    from troupe_agent.output_configmap import OutputConfigMaps

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaskOptions:
    """Where task mode reads and writes; see ``troupe-agent task --help``."""

    input_file: Path | None
    """The TaskInput as a file; when None, read from the variable ``input_env``."""
    input_env: str
    spec_file: Path
    outputs_dir: Path | None
    """Read upstream outputs from ``DIR/<ConfigMap name>.json`` instead of the API."""
    output_file: Path | None
    """Write the output here instead of to the input's output ConfigMap."""
    termination_log: Path


class UpstreamOutputs(Protocol):
    def read(self, task: str, config_map: str) -> str:
        """The output text of upstream ``task``, kept under ``config_map``."""
        ...


def run_task_mode(options: TaskOptions) -> int:
    """Run the task the input describes, report how it went; the process exit code."""
    spent = UsageTally()
    try:
        result, report = _run(options, spent)
    except Exception as exc:
        failure = (
            exc
            if isinstance(exc, TaskFailed)  # a bug or an unforeseen library error otherwise
            else TaskFailed(f"unexpected {type(exc).__name__}: {exc}", EXIT_RETRYABLE)
        )
        log.error("task failed: %s", failure)
        write_report(failure_report(str(failure), spent.result()), options.termination_log)
        return failure.exit_code
    write_report(report, options.termination_log)
    log.info(
        "task done: %d bytes, model %s, %d calls, %d tokens",
        result.bytes,
        result.model,
        result.calls,
        result.usage.total_tokens,
    )
    return 0


def _run(options: TaskOptions, spent: UsageTally) -> tuple[TaskResult, TaskReport]:
    task_input = load_task_input(options.input_file, options.input_env)
    deadline = Deadline(task_input.deadline_seconds)
    unit = task_input.instance or task_input.task  # an instance logs as itself (research.2)
    log.info("task %s/%s attempt %d", task_input.workflow, unit, task_input.attempt)
    spec, task = load_task_spec(options.spec_file, task_input.task)
    api_key = read_api_key(task_input)

    @functools.cache
    def cluster() -> OutputConfigMaps:
        from troupe_agent.output_configmap import OutputConfigMaps

        return OutputConfigMaps.connect(task_input.namespace, deadline)

    write = _output_writer(options, task_input.output, task_input.attempt, cluster)
    upstream: UpstreamOutputs = (
        OutputFiles(options.outputs_dir) if options.outputs_dir is not None else cluster()
    )

    def prompt() -> TaskPrompt:
        outputs = {name: upstream.read(name, cm) for name, cm in task_input.upstream.items()}
        output_lists = {
            name: [upstream.read(instance_key(name, index), cm) for index, cm in enumerate(maps)]
            for name, maps in task_input.fan_in.items()
        }
        outputs.update({name: join_outputs(name, texts) for name, texts in output_lists.items()})
        outputs.update(dict.fromkeys(task_input.skipped, ""))
        values = render_values(spec, outputs, output_lists, task_input.item)
        return build_task_prompt(task, read_inputs(spec), values, deadline)

    agent_options = AgentOptions(observers=[spent])
    fields = counts = scores = decision = None
    try:
        if task_input.supervise is not None:
            step = run_supervise_step(
                task_input, task, prompt, upstream.read, api_key, deadline, agent_options
            )
            text, result, decision = step.text, step.result, step.decision
        elif task_input.candidates is not None:
            answers = {
                label: upstream.read(label, cm) for label, cm in task_input.candidates.items()
            }
            text, result, scores = judge_candidates(
                task_input, task, prompt(), answers, api_key, deadline, agent_options
            )
        elif task.output_schema is None:
            text, result = run_task(task_input, prompt(), api_key, deadline, agent_options)
        else:
            value, text, result = run_structured_task(
                task_input, prompt(), task.output_schema, api_key, deadline, agent_options
            )
            conditions = [other.when for other in spec.tasks if other.when]
            fields = condition_fields(value, fields_read(conditions, task.name))
            counts = list_lengths(value, counted_lists(spec, task.name))
    except ModelCallError as exc:
        raise TaskFailed(str(exc), EXIT_RETRYABLE if exc.retryable else EXIT_PERMANENT) from exc
    result = spent.completed(result)  # the retried calls' failures too
    check_output_size(text)
    report = success_report(text, result, fields, counts, scores, decision)
    write(text, result, report)
    if task_input.cache_entry is not None and task_input.output is not None:
        cluster().cache(task_input.output, task_input.cache_entry, text, result, report)
    return result, report


def _output_writer(
    options: TaskOptions,
    target: OutputTarget | None,
    attempt: int,
    cluster: Callable[[], OutputConfigMaps],
) -> Callable[[str, TaskResult, TaskReport], None]:
    """Where the output will go, decided before any work is done."""
    if options.output_file is not None:
        path = options.output_file

        def write_file(text: str, result: TaskResult, report: TaskReport) -> None:
            write_output_file(path, text, result)

        return write_file
    if target is not None:

        def write_config_map(text: str, result: TaskResult, report: TaskReport) -> None:
            cluster().write(target, text, result, report, attempt)

        return write_config_map
    raise TaskFailed(
        "nowhere to write the output: the input has no output ConfigMap and no "
        "--output-file was given",
        EXIT_PERMANENT,
    )


def check_output_size(text: str) -> None:
    size = len(text.encode())
    if size > MAX_OUTPUT_BYTES:
        raise TaskFailed(
            f"output is {size} bytes, more than the {MAX_OUTPUT_BYTES}-byte limit of an output "
            "ConfigMap; it was refused, not truncated (ask the agent for a shorter answer)",
            EXIT_PERMANENT,
        )
