"""Child names are deterministic, collision-free DNS-1123 labels; status values stay short."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from troupe_operator.workflow import WorkflowRef, format_duration, status_patch
from troupe_operator.workflow.summary import brief, preview_chars

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
NAMES = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", fullmatch=True)


def test_names_are_readable_with_a_hash_of_the_workflows_uid() -> None:
    run = WorkflowRef("ns", "launch-brief", "uid-1")
    tag = run.run_hash
    assert len(tag) == 8
    assert run.job_name("research", 1) == f"launch-brief-research-{tag}-1"
    assert run.output_config_map("research") == f"launch-brief-research-{tag}-out"
    assert run.spec_config_map() == f"launch-brief-{tag}-spec"
    assert run.task_identity() == f"launch-brief-{tag}-task"


def test_workflows_whose_names_and_tasks_read_alike_get_different_children() -> None:
    """Reproduced: Workflow a-b task c and Workflow a task b-c made the same Job name."""
    first, second = WorkflowRef("ns", "a-b", "uid-1"), WorkflowRef("ns", "a", "uid-2")
    assert first.job_name("c", 1) != second.job_name("b-c", 1)
    assert first.output_config_map("c") != second.output_config_map("b-c")


def test_a_workflow_created_again_under_its_name_gets_new_children() -> None:
    old, new = WorkflowRef("ns", "wf", "uid-old"), WorkflowRef("ns", "wf", "uid-new")
    assert old.job_name("a", 1) != new.job_name("a", 1)
    assert old.spec_config_map() != new.spec_config_map()


@given(NAMES, NAMES, st.integers(1, 11))
def test_every_child_name_is_a_stable_dns_label(workflow: str, task: str, attempt: int) -> None:
    run = WorkflowRef("ns", workflow, "uid")
    names = [
        run.job_name(task, attempt),
        run.output_config_map(task),
        run.spec_config_map(),
        run.task_identity(),
    ]
    for name in names:
        assert len(name) <= 63
        assert DNS_LABEL.match(name), name
    assert names == [
        run.job_name(task, attempt),
        run.output_config_map(task),
        run.spec_config_map(),
        run.task_identity(),
    ]
    assert run.job_name(task, attempt) != run.job_name(task, attempt + 1)


def test_long_names_keep_their_suffix_and_differ_by_task_and_attempt() -> None:
    run = WorkflowRef("ns", "w" * 63, "uid")
    tasks = ["t" * 62 + "a", "t" * 62 + "b"]
    assert len({run.job_name(task, attempt) for task in tasks for attempt in range(1, 12)}) == 22
    outputs = {run.output_config_map(task) for task in tasks}
    assert len(outputs) == 2 and all(name.endswith("-out") for name in outputs)


def test_only_the_operator_sets_block_owner_deletion() -> None:
    run = WorkflowRef("ns", "wf", "uid")
    assert run.owner_reference(block_owner_deletion=True)["blockOwnerDeletion"] is True
    assert "blockOwnerDeletion" not in run.owner_reference(block_owner_deletion=False)


def test_durations_read_like_kubectl() -> None:
    assert [format_duration(s) for s in (0, 45, 65, 3600 + 187)] == [
        "0s",
        "45s",
        "1m05s",
        "1h03m07s",
    ]


def test_messages_are_one_capped_line() -> None:
    assert brief("a\n  b") == "a b"
    assert len(brief("x" * 1000)) == 300
    assert brief("x" * 1000).endswith("…")
    assert preview_chars(4) == 200
    assert preview_chars(1000) == 64


def test_status_patch_clears_vanished_fields() -> None:
    previous = {"phase": "Running", "message": "1 running", "tasks": {"a": {"job": "j", "x": 1}}}
    new = {"phase": "Running", "tasks": {"a": {"job": "j"}, "b": {"job": "k"}}}
    assert status_patch(previous, new) == {
        "message": None,
        "tasks": {"a": {"x": None}, "b": {"job": "k"}},
    }
