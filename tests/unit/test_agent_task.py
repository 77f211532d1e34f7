"""Task mode in-process on the scripted model: inputs, upstream files, bounded rendering, the
report on every exit, exit codes, the size limit, and the command line."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from troupe_agent import task, task_prompt
from troupe_agent.__main__ import main
from troupe_agent.agent import AgentOptions
from troupe_agent.errors import CallFailure, ModelCallError
from troupe_agent.failures import TaskFailed
from troupe_agent.prompts import TaskPrompt
from troupe_agent.retry import Deadline
from troupe_agent.scripted import PLACEHOLDER_BANNER
from troupe_agent.task import TaskOptions, run_task_mode
from troupe_agent.task_prompt import build_task_prompt
from troupe_agent.task_report import failure_report, success_report
from troupe_agent.usage import CallStats
from troupe_operator.api import (
    EXIT_PERMANENT,
    EXIT_RETRYABLE,
    INPUT_ENV,
    MAX_OUTPUT_BYTES,
    MAX_REPORT_BYTES,
    TaskInput,
    TaskReport,
    TaskResult,
    TaskSpec,
    TokenUsage,
)
from troupe_operator.api.workflow import MAX_CONDITION_JSON_BYTES
from troupe_operator.templates import RenderValues


@pytest.fixture(autouse=True)
def no_task_input_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(INPUT_ENV, raising=False)


def task_input(**fields: Any) -> dict[str, Any]:
    return {
        "workflow": "wf",
        "namespace": "team-a",
        "task": "write",
        "attempt": 1,
        "agentName": "writer",
        "agent": {"role": "executor"},
        **fields,
    }


def workflow_spec(prompt: str = "Write it", depends_on: tuple[str, ...] = ()) -> dict[str, Any]:
    tasks: list[dict[str, Any]] = [
        {"name": name, "agent": "a", "prompt": "earlier"} for name in depends_on
    ]
    tasks.append({"name": "write", "agent": "a", "prompt": prompt, "dependsOn": list(depends_on)})
    return {"inputs": {"topic": "tides"}, "tasks": tasks}


def prepare(
    tmp_path: Path,
    wire: dict[str, Any] | str | None = None,
    spec: dict[str, Any] | None = None,
    outputs: dict[str, str] | None = None,
) -> TaskOptions:
    """Input, spec and upstream output files on disk; upstream task NAME is ConfigMap wf-NAME."""
    outputs = outputs or {}
    wire = wire or task_input(upstream={name: f"wf-{name}" for name in outputs})
    input_file = tmp_path / "input.json"
    input_file.write_text(wire if isinstance(wire, str) else json.dumps(wire))
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(spec or workflow_spec(depends_on=tuple(outputs))))
    outputs_dir = tmp_path / "outputs"
    outputs_dir.mkdir()
    for name, text in outputs.items():
        (outputs_dir / f"wf-{name}.json").write_text(json.dumps({"model": "m", "output": text}))
    return TaskOptions(
        input_file=input_file,
        input_env=INPUT_ENV,
        spec_file=spec_file,
        outputs_dir=outputs_dir,
        output_file=tmp_path / "out.json",
        termination_log=tmp_path / "termination-log",
    )


def report(options: TaskOptions) -> TaskReport:
    text = options.termination_log.read_text()
    assert text.count("\n") == 1 and text.endswith("\n")
    decoded = TaskReport.decode(text)
    assert decoded is not None, text
    return decoded


def failure(options: TaskOptions, exit_code: int) -> TaskReport:
    assert run_task_mode(options) == exit_code
    outcome = report(options)
    assert not outcome.succeeded and outcome.message is not None
    return outcome


def test_a_task_renders_its_template_and_reports_success(tmp_path: Path) -> None:
    spec = workflow_spec("About {{ inputs.topic }}: {{ tasks.plan.output }}", ("plan",))
    options = prepare(tmp_path, spec=spec, outputs={"plan": "step one"})
    assert run_task_mode(options) == 0
    written = json.loads((tmp_path / "out.json").read_text())
    text = written.pop("output")
    result = TaskResult.model_validate(written)
    assert text.startswith(PLACEHOLDER_BANNER) and "About tides: step one" in text
    assert result.scripted and result.bytes == len(text.encode())
    outcome = report(options)
    assert outcome.succeeded and outcome.result == result and outcome.message is None
    assert outcome.preview == " ".join(text.split())[:200]


def test_a_secret_input_comes_from_its_variable_and_never_reaches_the_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = {
        **workflow_spec("Sign with {{ inputs.signature }} about {{ inputs.topic }}"),
        "inputsFrom": [{"name": "signature", "secretKeyRef": {"name": "s", "key": "k"}}],
    }
    options = prepare(tmp_path, spec=spec)
    monkeypatch.setenv("TROUPE_SECRET_INPUT_0", "hunter2-secret")
    assert run_task_mode(options) == 0
    text = json.loads((tmp_path / "out.json").read_text())["output"]
    assert "Sign with hunter2-secret about tides" in text  # the scripted model repeats its prompt
    outcome = report(options)
    assert outcome.preview is not None and "[REDACTED]" in outcome.preview
    assert "hunter2-secret" not in options.termination_log.read_text()


def test_a_secret_input_without_its_variable_fails_for_good(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TROUPE_SECRET_INPUT_0", raising=False)
    spec = {
        **workflow_spec(),
        "inputsFrom": [{"name": "signature", "secretKeyRef": {"name": "s", "key": "k"}}],
    }
    outcome = failure(prepare(tmp_path, spec=spec), EXIT_PERMANENT)
    assert outcome.message == (
        "input 'signature' comes from a Secret, but the variable TROUPE_SECRET_INPUT_0 that "
        "carries it is not set"
    )


def test_the_input_comes_from_the_environment_unless_a_file_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = prepare(tmp_path)
    assert options.input_file is not None
    monkeypatch.setenv("MY_INPUT", options.input_file.read_text())
    assert run_task_mode(dataclasses.replace(options, input_file=None, input_env="MY_INPUT")) == 0
    unset = dataclasses.replace(options, input_file=None)
    assert failure(unset, EXIT_PERMANENT).message == (
        f"no task input: the environment variable {INPUT_ENV} is not set"
    )


@pytest.mark.parametrize(
    ("wire", "spec", "expected"),
    [
        ("{not json", None, "task input"),
        (task_input(attempt=0), None, "is invalid: attempt"),
        ({**task_input(), "surprise": 1}, None, "surprise"),
        (task_input(task="absent"), None, "has no task 'absent'"),
        (None, {"tasks": []}, "is invalid: (root): tasks: give at least one task"),
        (task_input(apiKeyEnv="TROUPE_UNSET_KEY"), None, "TROUPE_UNSET_KEY is not set"),
        (task_input(upstream={"plan": "wf-plan"}), None, "output of upstream task 'plan' (file"),
        (None, workflow_spec("{{ tasks.plan.output }}"), "no output ConfigMap for upstream"),
        (None, workflow_spec("{{ inputs. }}"), "syntax error on line 1"),
        (None, workflow_spec("{{ 'x' * 10**10 }}"), "string of 10000000000 characters"),
    ],
)
def test_bad_input_is_one_clear_permanent_line(
    tmp_path: Path, wire: dict[str, Any] | str | None, spec: dict[str, Any] | None, expected: str
) -> None:
    outcome = failure(prepare(tmp_path, wire, spec), EXIT_PERMANENT)
    assert outcome.message is not None and expected in outcome.message
    assert outcome.result is None  # nothing was spent


def test_a_missing_spec_file_is_permanent(tmp_path: Path) -> None:
    options = dataclasses.replace(prepare(tmp_path), spec_file=tmp_path / "absent.json")
    assert "cannot read workflow spec" in str(failure(options, EXIT_PERMANENT).message)


NESTED_LOOPS = "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}"
DOUBLING = (
    "{% set ns = namespace(s='x' * 1000000) %}"
    "{% for i in range(12) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}"
)


@pytest.mark.parametrize(
    ("template", "render_seconds", "deadline", "exit_code", "message"),
    [
        (NESTED_LOOPS, 0.5, None, EXIT_PERMANENT, "prompt template took longer than 0.5 s"),
        (NESTED_LOOPS, 0.5, 0.3, EXIT_RETRYABLE, "the task deadline passed while rendering"),
        # time enough that only memory can stop it, on a loaded machine too
        (DOUBLING, 3.0, None, EXIT_PERMANENT, "prompt template needed more than the 64 MiB"),
    ],
)
def test_a_hostile_template_ends_its_task_promptly_with_the_limit_it_hit(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    template: str,
    render_seconds: float,
    deadline: float | None,
    exit_code: int,
    message: str,
) -> None:
    monkeypatch.setattr(task_prompt, "RENDER_SECONDS", render_seconds)
    monkeypatch.setattr(task_prompt, "RENDER_MEMORY_BYTES", 64 * 2**20)
    options = prepare(tmp_path, task_input(deadlineSeconds=deadline), workflow_spec(template))
    started = time.monotonic()
    outcome = failure(options, exit_code)
    assert time.monotonic() - started < 5
    assert outcome.message is not None and outcome.message.startswith(message)


@pytest.mark.parametrize(
    ("template", "depends_on", "material"),
    [
        ("Use {{ tasks.a.output }}", ("a", "b"), {"b": "B"}),
        ("Use {{ tasks.a.output }} and {{ tasks.b.output }}", ("a", "b"), {}),
        ("Plain", ("a", "b"), {"a": "A", "b": "B"}),
        ("Use {{ tasks.c.output }}", ("b",), {"b": "B"}),  # c: an indirect dependency
    ],
)
def test_the_material_holds_only_direct_dependencies_the_template_does_not_place(
    template: str, depends_on: tuple[str, ...], material: dict[str, str]
) -> None:
    task_spec = TaskSpec(name="t", agent="x", prompt=template, depends_on=list(depends_on))
    outputs = {"a": "A", "b": "B", "c": "C"}
    prompt = build_task_prompt(task_spec, {}, RenderValues(outputs), Deadline(None))
    assert dict(prompt.material) == material
    for name, text in outputs.items():
        placed = f"tasks.{name}.output" in template
        assert prompt.text.count(text) == placed


def test_an_oversized_output_is_refused_and_what_it_cost_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    huge = "x" * (MAX_OUTPUT_BYTES + 1)
    spent = CallStats(usage=TokenUsage(input_tokens=5, output_tokens=7, total_tokens=12), calls=1)

    def paid_for_run_task(
        task_input: TaskInput, prompt: TaskPrompt, key: str | None, _: Deadline, o: AgentOptions
    ) -> tuple[str, TaskResult]:
        for observer in o.observers:
            observer.call_succeeded("m", spent)
        return huge, TaskResult(model="m", usage=spent.usage, calls=1, bytes=len(huge))

    monkeypatch.setattr(task, "run_task", paid_for_run_task)
    options = prepare(tmp_path)
    outcome = failure(options, EXIT_PERMANENT)
    assert str(outcome.message).startswith(f"output is {MAX_OUTPUT_BYTES + 1} bytes")
    assert outcome.result is not None and outcome.result.usage == spent.usage
    assert not (tmp_path / "out.json").exists()


@pytest.mark.parametrize("succeeds", [True, False], ids=["then-succeeds", "retries-exhausted"])
def test_failed_model_calls_are_reported_by_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, succeeds: bool
) -> None:
    """Two 429s and a timeout, then a reply or none: the report counts them either way."""
    spent = CallStats(usage=TokenUsage(input_tokens=5, output_tokens=7, total_tokens=12), calls=1)

    def rate_limited_run_task(
        task_input: TaskInput, prompt: TaskPrompt, key: str | None, _: Deadline, o: AgentOptions
    ) -> tuple[str, TaskResult]:
        for status in ("429", "timeout", "429"):
            for observer in o.observers:
                observer.call_failed("m", status)
        if not succeeds:
            failure = CallFailure(status="429", detail="slow down", retryable=True)
            raise ModelCallError(agent="writer", model="m", failure=failure, attempts=3)
        for observer in o.observers:
            observer.call_succeeded("m", spent)
        return "text", TaskResult(model="m", usage=spent.usage, calls=1, bytes=4)

    monkeypatch.setattr(task, "run_task", rate_limited_run_task)
    options = prepare(tmp_path)
    assert run_task_mode(options) == (0 if succeeds else EXIT_RETRYABLE)
    result = report(options).result
    assert result is not None and result.failed_calls == {"429": 2, "timeout": 1}
    assert result.model_calls().total == 3 + succeeds


def test_no_output_target_is_permanent_before_any_model_call(tmp_path: Path) -> None:
    options = dataclasses.replace(prepare(tmp_path), output_file=None)
    outcome = failure(options, EXIT_PERMANENT)
    assert "nowhere to write" in str(outcome.message) and outcome.result is None


def test_an_unwritable_termination_log_is_skipped(tmp_path: Path) -> None:
    options = dataclasses.replace(prepare(tmp_path), termination_log=tmp_path / "no-dir" / "log")
    assert run_task_mode(options) == 0


@pytest.mark.parametrize(
    "argv",
    [["task", "--input", "a.json", "--input-env", "X"], ["task", "--bogus"]],
)
def test_cli_usage_errors_exit_permanent(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == EXIT_PERMANENT


def test_cli_runs_a_task_from_the_default_input_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = prepare(tmp_path, outputs={"plan": "step one"})
    assert options.input_file is not None
    monkeypatch.setenv(INPUT_ENV, options.input_file.read_text())
    argv = ["task", "--spec", str(options.spec_file), "--outputs-dir", str(options.outputs_dir)]
    argv += ["--output-file", str(options.output_file)]
    argv += ["--termination-log", str(options.termination_log)]
    try:
        assert main(argv) == 0
    finally:
        logging.getLogger().handlers.clear()  # undo main()'s stderr handler for later tests
    assert report(options).succeeded


def test_a_report_of_escaped_characters_still_fits_the_termination_message() -> None:
    control = "\x01" * 1000
    statuses = ("connection", "malformed", "timeout", "error", "other", "429", "500", "503")
    most: dict[str, Any] = {"calls": 10**9, "failed_calls": dict.fromkeys(statuses, 10**9)}
    failed = failure_report(
        TaskFailed(control, EXIT_PERMANENT).args[0], TaskResult(model=control[:253], **most)
    )
    fields = {"f": control[:83]}  # 506 bytes as JSON: near MAX_CONDITION_JSON_BYTES (512)
    assert len(json.dumps(fields, separators=(",", ":"))) <= MAX_CONDITION_JSON_BYTES
    succeeded = success_report(control, TaskResult(model=control[:253], **most), fields)
    for outcome in (failed, succeeded):
        line = outcome.encode() + "\n"
        assert len(line.encode()) <= MAX_REPORT_BYTES and line.count("\n") == 1
        assert TaskReport.decode(line) is not None
