"""``troupe run`` writes and deletes only inside ``--output-dir``, whatever the names say."""

from __future__ import annotations

from pathlib import Path

import pytest

from troupe_operator.api import WorkflowPhase, WorkflowStatus
from troupe_operator.local.outputs import OutputPathError, prepare_output_dirs, write_workflow

DONE = WorkflowStatus(phase=WorkflowPhase.SUCCEEDED)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """``tmp_path/out``, beside two directories an escape would reach, each with a stale file."""
    for escaped in ("relative-escape", "absolute-escape", "elsewhere"):
        (tmp_path / escaped).mkdir()
        (tmp_path / escaped / "gone.md").write_text("not troupe's to delete")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "linked").symlink_to(tmp_path / "elsewhere")
    return tmp_path / "out"


@pytest.mark.parametrize(
    "name", ["../relative-escape", "{parent}/absolute-escape", "linked", "..", ".", ""]
)
def test_a_workflow_name_reaching_outside_the_output_dir_writes_and_deletes_nothing(
    root: Path, name: str
) -> None:
    name = name.format(parent=root.parent)
    with pytest.raises(OutputPathError):
        write_workflow(root, name, {"only": "text", "gone": None}, DONE)
    for escaped in ("relative-escape", "absolute-escape", "elsewhere"):
        assert sorted(p.name for p in (root.parent / escaped).iterdir()) == ["gone.md"]
    assert prepare_output_dirs(root, [name])


@pytest.mark.parametrize("task", ["../../relative-escape/gone", "a/b", "/etc/passwd"])
def test_a_task_name_reaching_outside_its_workflow_dir_is_refused(root: Path, task: str) -> None:
    with pytest.raises(OutputPathError):
        write_workflow(root, "wf", {task: None}, DONE)
    assert (root.parent / "relative-escape" / "gone.md").exists()


def test_outputs_are_written_stale_ones_removed_and_status_recorded(root: Path) -> None:
    (root / "wf").mkdir()
    (root / "wf" / "gone.md").write_text("from an earlier run")
    write_workflow(root, "wf", {"only": "text", "gone": None}, DONE)
    assert sorted(p.name for p in (root / "wf").iterdir()) == ["only.md", "status.json"]
    assert '"phase": "Succeeded"' in (root / "wf" / "status.json").read_text()


@pytest.mark.parametrize(
    ("file_at", "problem"),
    [
        ("parent", "--output-dir {out}: cannot create it: Not a directory"),
        ("parent/out", "--output-dir {out}: not a directory"),
        ("parent/out/wf", "{out}/wf, the output directory of Workflow 'wf': not a directory"),
    ],
)
def test_a_file_where_an_output_dir_goes_is_one_problem_line(
    tmp_path: Path, file_at: str, problem: str
) -> None:
    out = tmp_path / "parent" / "out"
    (tmp_path / file_at).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / file_at).write_text("a file")
    assert prepare_output_dirs(out, ["wf", "other"]) == [problem.format(out=out)]


def test_output_dirs_are_created_with_their_parents(tmp_path: Path) -> None:
    out = tmp_path / "parent" / "out"
    assert prepare_output_dirs(out, ["wf", "other"]) == []
    assert sorted(p.name for p in out.iterdir()) == ["other", "wf"]
