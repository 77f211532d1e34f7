"""Task mode in-process: output file, termination log, exit codes, size limit, key hygiene."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from troupe_agent import task
from troupe_agent.__main__ import main
from troupe_agent.scripted import PLACEHOLDER_BANNER
from troupe_agent.task import TaskOptions, run_task_mode
from troupe_operator.api import EXIT_PERMANENT, MAX_OUTPUT_BYTES, TaskInput, TaskResult


def task_input(**fields: Any) -> dict[str, Any]:
    return {
        "workflow": "wf",
        "namespace": "team-a",
        "task": "research",
        "attempt": 1,
        "agentName": "researcher",
        "agent": {"role": "researcher"},
        "prompt": "Find the facts",
        **fields,
    }


def write_input(tmp_path: Path, wire: dict[str, Any] | str) -> Path:
    path = tmp_path / "input.json"
    path.write_text(wire if isinstance(wire, str) else json.dumps(wire))
    return path


def options(tmp_path: Path, input_path: Path) -> TaskOptions:
    return TaskOptions(input_path, tmp_path / "out.json", tmp_path / "termination-log")


def test_scripted_task_writes_result_and_output_to_the_file(tmp_path: Path) -> None:
    opts = options(tmp_path, write_input(tmp_path, task_input()))
    assert run_task_mode(opts) == 0
    written = json.loads((tmp_path / "out.json").read_text())
    text = written.pop("output")
    result = TaskResult.model_validate(written)
    assert text.startswith(PLACEHOLDER_BANNER)
    assert result.scripted and result.bytes == len(text.encode())
    assert not (tmp_path / "termination-log").exists()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{not json", "is not JSON"),
        (json.dumps(task_input(attempt=0)), "attempt"),
        (json.dumps({**task_input(), "surprise": 1}), "surprise"),
    ],
)
def test_bad_input_is_one_clear_permanent_line(tmp_path: Path, content: str, expected: str) -> None:
    opts = options(tmp_path, write_input(tmp_path, content))
    assert run_task_mode(opts) == EXIT_PERMANENT
    message = (tmp_path / "termination-log").read_text()
    assert message.count("\n") == 1 and expected in message


def test_missing_input_file_is_permanent(tmp_path: Path) -> None:
    assert run_task_mode(options(tmp_path, tmp_path / "absent.json")) == EXIT_PERMANENT
    assert "cannot read task input" in (tmp_path / "termination-log").read_text()


def test_missing_api_key_variable_is_permanent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TROUPE_TEST_KEY", raising=False)
    opts = options(tmp_path, write_input(tmp_path, task_input(apiKeyEnv="TROUPE_TEST_KEY")))
    assert run_task_mode(opts) == EXIT_PERMANENT
    assert "TROUPE_TEST_KEY is not set" in (tmp_path / "termination-log").read_text()


def test_oversized_output_is_refused_not_truncated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    huge = "x" * (MAX_OUTPUT_BYTES + 1)

    def fake_run_task(task_input: TaskInput, api_key: str | None) -> tuple[str, TaskResult]:
        return huge, TaskResult(model="m", bytes=len(huge))

    monkeypatch.setattr(task, "run_task", fake_run_task)
    opts = options(tmp_path, write_input(tmp_path, task_input()))
    assert run_task_mode(opts) == EXIT_PERMANENT
    assert not (tmp_path / "out.json").exists()
    message = (tmp_path / "termination-log").read_text()
    assert f"{MAX_OUTPUT_BYTES + 1} bytes" in message and "refused" in message


def test_no_output_target_is_permanent(tmp_path: Path) -> None:
    opts = TaskOptions(write_input(tmp_path, task_input()), None, tmp_path / "termination-log")
    assert run_task_mode(opts) == EXIT_PERMANENT
    assert "nowhere to write" in (tmp_path / "termination-log").read_text()


def test_unwritable_termination_log_is_skipped(tmp_path: Path) -> None:
    opts = TaskOptions(tmp_path / "absent.json", None, tmp_path / "no-such-dir" / "log")
    assert run_task_mode(opts) == EXIT_PERMANENT


def test_cli_usage_errors_exit_permanent(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["task"])
    assert exited.value.code == EXIT_PERMANENT
    assert "--input" in capsys.readouterr().err


def test_cli_runs_a_task(tmp_path: Path) -> None:
    input_path = write_input(tmp_path, task_input())
    out = tmp_path / "cli-out.json"
    code = main(["task", "--input", str(input_path), "--output-file", str(out)])
    assert code == 0 and json.loads(out.read_text())["scripted"] is True
    logging.getLogger().handlers.clear()  # undo main()'s stderr handler for later tests
