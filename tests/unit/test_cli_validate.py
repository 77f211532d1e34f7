"""`troupe validate`: one line per problem, exit codes 0 / 1 / 2, never a traceback."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from troupe_operator.cli import main

Writer = Callable[[str], str]
Capture = pytest.CaptureFixture[str]

AGENT = """
apiVersion: troupe.dev/v1alpha1
kind: Agent
metadata: {name: writer}
spec: {role: executor}
"""


def workflow(tasks: str, name: str = "wf") -> str:
    return (
        AGENT
        + textwrap.dedent(
            f"""\
        ---
        apiVersion: troupe.dev/v1alpha1
        kind: Workflow
        metadata: {{name: {name}}}
        spec:
          inputs: {{topic: t}}
          tasks:
        """
        )
        + textwrap.indent(textwrap.dedent(tasks), "    ")
    )


@pytest.fixture
def write(tmp_path: Path) -> Writer:
    def write_file(text: str, name: str = "manifest.yaml") -> str:
        path = tmp_path / name
        path.write_text(text)
        return str(path)

    return write_file


CASES = {
    "cycle": (
        """\
        - {name: a, agent: writer, prompt: x, dependsOn: [b]}
        - {name: b, agent: writer, prompt: x, dependsOn: [a]}
        """,
        "Workflow/wf: dependency cycle: a -> b -> a",
    ),
    "self": (
        "- {name: a, agent: writer, prompt: x, dependsOn: [a]}\n",
        "Workflow/wf: task 'a' depends on itself",
    ),
    "unknown-dependency": (
        "- {name: a, agent: writer, prompt: x, dependsOn: [nope]}\n",
        "Workflow/wf: task 'a' depends on unknown task 'nope'",
    ),
    "duplicate": (
        """\
        - {name: a, agent: writer, prompt: x}
        - {name: a, agent: writer, prompt: y}
        """,
        "Workflow/wf: task name 'a' is used 2 times",
    ),
    "bad-template": (
        """\
        - {name: a, agent: writer, prompt: x}
        - {name: b, agent: writer, prompt: "{{ tasks.a.output }} {{ inputs.nope }}"}
        """,
        "Workflow/wf: task 'b' prompt uses unknown input 'nope'",
    ),
    "unknown-agent": (
        "- {name: a, agent: ghost, prompt: x}\n",
        "Workflow/wf: task 'a' uses agent 'ghost', which is not defined",
    ),
    "schema": (
        "- {name: Bad_Name, agent: writer, prompt: x}\n",
        "Workflow/wf: spec.tasks[0].name: must be a name of lowercase letters",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_invalid_workflow_exits_1_with_one_line(write: Writer, capsys: Capture, case: str) -> None:
    tasks, expected = CASES[case]
    path = write(workflow(tasks))
    assert main(["validate", path]) == 1
    out = capsys.readouterr().out
    assert f"{path}: {expected}" in out
    if case != "bad-template":
        assert len(out.splitlines()) == 1


def test_valid_files_exit_0(write: Writer, capsys: Capture) -> None:
    path = write(workflow("- {name: a, agent: writer, prompt: '{{ inputs.topic }}'}\n"))
    assert main(["validate", path]) == 0
    assert "2 Troupe objects valid" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: [\n", "not valid YAML at line 2"),
        ("- just\n- a list\n", "document 1 is not a mapping"),
        (b"\xff\xfe\x00".decode("latin-1"), "not valid YAML"),
    ],
)
def test_unparsable_file_exits_2(tmp_path: Path, capsys: Capture, text: str, expected: str) -> None:
    path = tmp_path / "broken.yaml"
    path.write_bytes(text.encode("latin-1"))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{path}: ") and expected in err
    assert len(err.splitlines()) == 1


def test_missing_file_exits_2(tmp_path: Path, capsys: Capture) -> None:
    assert main(["validate", str(tmp_path / "nope.yaml")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_cross_object_problems(write: Writer, capsys: Capture) -> None:
    tenants = "".join(
        f"---\napiVersion: troupe.dev/v1alpha1\nkind: Tenant\nmetadata: {{name: {n}}}\n"
        "spec: {namespaces: [shared]}\n"
        for n in ("one", "two")
    )
    path = write(AGENT + "---" + AGENT + tenants)
    assert main(["validate", path]) == 1
    out = capsys.readouterr().out
    assert "Agent/writer: is given more than once" in out
    assert "Tenant/two: namespace 'shared' already belongs to Tenant 'one'" in out


def test_wrong_api_version_and_missing_spec(write: Writer, capsys: Capture) -> None:
    path = write(
        "apiVersion: troupe.dev/v1\nkind: Agent\nmetadata: {name: a}\n---\n"
        "apiVersion: troupe.dev/v1alpha1\nkind: Agent\nmetadata: {name: b}\n"
    )
    assert main(["validate", path]) == 1
    out = capsys.readouterr().out
    assert "Agent/a: apiVersion 'troupe.dev/v1': troupe.dev serves only troupe.dev/v1alpha1" in out
    assert "Agent/b: spec: is required" in out


def test_console_script_never_prints_a_traceback(write: Writer) -> None:
    path = write("kind: Workflow\nmetadata: 7\nspec: [1]\n---\nkind: Agent\nspec: {role: 9}\n")
    result = subprocess.run(
        [sys.executable, "-m", "troupe_operator", "validate", path],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr


def test_every_example_is_valid(capsys: Capture) -> None:
    examples = sorted(str(p) for p in (Path(__file__).parents[2] / "examples").glob("*.yaml"))
    assert main(["validate", *examples]) == 0, capsys.readouterr().out


TEMPLATE = """
---
apiVersion: troupe.dev/v1alpha1
kind: WorkflowTemplate
metadata: {name: tpl}
spec:
  inputs: {topic: t}
  tasks: TASKS
"""
RUN = """
---
apiVersion: troupe.dev/v1alpha1
kind: Workflow
metadata: {name: wf}
spec: SPEC
"""
TASKS = "[{name: a, agent: writer, prompt: '{{ inputs.topic }}'}]"
TEMPLATE_CASES = {
    "unknown-input": (
        TEMPLATE + RUN.replace("SPEC", "{workflowTemplateRef: {name: tpl}, inputs: {tone: x}}"),
        ["Workflow/wf: input 'tone' is not an input of WorkflowTemplate 'tpl' (its inputs: topic)"],
    ),
    "bad-template": (
        TEMPLATE.replace("TASKS", "[{name: a, agent: ghost, prompt: x}]")
        + RUN.replace("SPEC", "{workflowTemplateRef: {name: tpl}}"),
        [
            "WorkflowTemplate/tpl: task 'a' uses agent 'ghost', which is not defined",
            "Workflow/wf: task 'a' uses agent 'ghost', which is not defined",
        ],
    ),
    "missing-template": (
        TEMPLATE + RUN.replace("SPEC", "{workflowTemplateRef: {name: ghost}}"),
        ["Workflow/wf: uses WorkflowTemplate 'ghost', which is not defined"],
    ),
    "both": (
        TEMPLATE + RUN.replace("SPEC", f"{{workflowTemplateRef: {{name: tpl}}, tasks: {TASKS}}}"),
        ["Workflow/wf: spec: must give tasks or workflowTemplateRef, not both"],
    ),
    "secret-in-condition": (
        RUN.replace(
            "SPEC",
            "{inputsFrom: [{name: k, secretKeyRef: {name: s, key: k}}], "
            "tasks: [{name: a, agent: writer, prompt: x, when: 'inputs.k == \"y\"'}]}",
        ),
        ["Workflow/wf: task 'a' when reads input 'k', which comes from a Secret"],
    ),
}


@pytest.mark.parametrize("case", list(TEMPLATE_CASES))
def test_a_workflow_is_checked_as_resolved_with_its_template(
    write: Writer, capsys: Capture, case: str
) -> None:
    text, expected = TEMPLATE_CASES[case]
    path = write(AGENT + text.replace("TASKS", TASKS))
    assert main(["validate", path]) == 1
    out = capsys.readouterr().out.splitlines()
    assert len(out) == len(expected), out
    for line, wanted in zip(out, expected, strict=True):
        assert line.startswith(f"{path}: {wanted}")


def test_a_template_not_in_the_files_may_be_in_the_cluster(write: Writer, capsys: Capture) -> None:
    path = write(AGENT + RUN.replace("SPEC", "{workflowTemplateRef: {name: elsewhere}}"))
    assert main(["validate", path]) == 0, capsys.readouterr().out
