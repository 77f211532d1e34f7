"""Child names are deterministic DNS-1123 labels; status values stay short."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from troupe_operator.workflow import (
    input_config_map_name,
    job_name,
    output_config_map_name,
    spec_config_map_name,
    status_patch,
)
from troupe_operator.workflow.summary import brief, preview_chars
from troupe_operator.workflow.timing import format_duration

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
NAMES = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", fullmatch=True)


def test_short_names_are_readable() -> None:
    assert job_name("launch-brief", "research", 1) == "launch-brief-research-1"
    assert input_config_map_name("launch-brief", "research", 2) == "launch-brief-research-2-in"
    assert output_config_map_name("launch-brief", "research", 2) == "launch-brief-research-2-out"
    assert spec_config_map_name("launch-brief") == "launch-brief-spec"


@given(NAMES, NAMES, st.integers(1, 11))
def test_every_child_name_is_a_stable_dns_label(workflow: str, task: str, attempt: int) -> None:
    for make in (job_name, input_config_map_name, output_config_map_name):
        name = make(workflow, task, attempt)
        assert len(name) <= 63
        assert DNS_LABEL.match(name), name
        assert name == make(workflow, task, attempt)
    assert job_name(workflow, task, attempt) != job_name(workflow, task, attempt + 1)
    assert DNS_LABEL.match(spec_config_map_name(workflow))


def test_long_names_keep_their_suffix_and_differ_by_attempt() -> None:
    workflow, task = "w" * 63, "t" * 63
    names = {job_name(workflow, task, attempt) for attempt in range(1, 12)}
    assert len(names) == 11
    assert output_config_map_name(workflow, task, 1).endswith("-out")
    assert input_config_map_name(workflow, task, 1).endswith("-in")


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
