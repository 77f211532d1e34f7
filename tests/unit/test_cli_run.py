"""``troupe run`` end to end with a fake task command standing in for the agent runtime."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.support.waiting import wait_for
from troupe_operator.cli import main
from troupe_operator.local.command import run_command
from troupe_operator.local.parallelism import machine_parallelism

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SECRET_KEY = "sk-test-5f1e2d3c4b5a"

FAKE_TASK = textwrap.dedent(
    """
    import argparse, json, os, subprocess, sys, time
    from troupe_operator.templates import RenderValues, render
    parser = argparse.ArgumentParser()
    for flag in ("--input", "--spec", "--outputs-dir", "--output-file", "--termination-log"):
        parser.add_argument(flag)
    args = parser.parse_args()
    task = json.load(open(args.input))
    spec = json.load(open(args.spec))
    name = task["task"]
    mode = os.environ.get("FAKE_" + name.upper().replace("-", "_"), "ok")
    child = None
    if mode == "sleep":
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    record = os.environ.get("FAKE_RECORD")
    if record:
        with open(record, "a") as out:
            env = task.get("apiKeyEnv")
            out.write(json.dumps({
                "task": name, "attempt": task["attempt"], "pid": os.getpid(),
                "child": child and child.pid,
                "key": os.environ.get(env) if env else None,
                "openai": os.environ.get("OPENAI_API_KEY"),
            }) + "\\n")
    def report(**fields):
        open(args.termination_log, "w").write(json.dumps(fields))
    def fail(message, code):
        report(succeeded=False, message=message)
        sys.exit(code)
    if mode == "permanent":
        fail("bad request: model 'nope' does not exist", 3)
    if mode == "flaky" and task["attempt"] == 1:
        fail("HTTP 503 from the model", 1)
    if mode == "sleep":
        time.sleep(60)
    upstream = {
        up: json.load(open(os.path.join(args.outputs_dir, config_map + ".json")))["output"]
        for up, config_map in task["upstream"].items()
    }
    template = next(t["prompt"] for t in spec["tasks"] if t["name"] == name)
    prompt = render(template, spec.get('inputs', {}), RenderValues(upstream))
    text = f"{name} done; prompt was: {prompt}"
    result = {"model": "fake-model", "usage": {"inputTokens": 3, "outputTokens": 4,
              "totalTokens": 7}, "bytes": len(text.encode())}
    json.dump({**result, "output": text}, open(args.output_file, "w"))
    report(succeeded=True, result=result, preview=text[:200])
    """
)

PIPELINE = """
apiVersion: troupe.dev/v1alpha1
kind: Agent
metadata: {name: worker}
spec:
  role: executor
  model: {baseURL: "http://127.0.0.1:9/v1", apiKeySecretRef: {name: llm, key: api-key}}
---
apiVersion: v1
kind: Secret
metadata: {name: llm}
stringData: {api-key: SECRET}
---
apiVersion: troupe.dev/v1alpha1
kind: Workflow
metadata: {name: pipe}
spec:
  inputs: {topic: tea}
  retryBackoffSeconds: 0
  tasks:
    - {name: first, agent: worker, prompt: "About {{ inputs.topic }}", retries: 1,
       timeoutSeconds: 2}
    - {name: second, agent: worker, dependsOn: [first], prompt: "Use {{ tasks.first.output }}"}
    - {name: side, agent: worker, prompt: "Side task"}
""".replace("SECRET", SECRET_KEY)


@pytest.fixture
def fake_command(tmp_path: Path) -> list[str]:
    script = tmp_path / "fake_task.py"
    script.write_text(FAKE_TASK, encoding="utf-8")
    return [sys.executable, str(script)]


@pytest.fixture
def pipeline(tmp_path: Path) -> str:
    path = tmp_path / "pipeline.yaml"
    path.write_text(PIPELINE, encoding="utf-8")
    return str(path)


def read_status(directory: Path) -> dict:
    return json.loads((directory / "status.json").read_text())


def run_pipeline(
    tmp_path: Path, pipeline: str, command: list[str], *overrides: str
) -> tuple[int, dict]:
    """Run the pipeline; its exit code and the written status."""
    out = tmp_path / "out"
    code = run_command([pipeline], overrides, output_dir=str(out), task_command=command)
    return code, read_status(out / "pipe")


def test_the_serial_example_runs_to_the_end(
    tmp_path: Path, fake_command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = run_command(
        [str(EXAMPLES / "serial-pipeline.yaml")], output_dir=str(out), task_command=fake_command
    )
    assert code == 0
    files = sorted(p.name for p in (out / "launch-brief").iterdir())
    assert files == ["plan.md", "research.md", "review.md", "status.json", "write.md"]
    status = read_status(out / "launch-brief")
    assert status["phase"] == "Succeeded"
    assert status["progress"] == "4/4"
    assert status["usage"]["totalTokens"] == 28
    assert "research done" in (out / "launch-brief" / "plan.md").read_text()
    printed = capsys.readouterr().out
    scripted_lines = [line for line in printed.splitlines() if "offline scripted model" in line]
    assert len(scripted_lines) == 1
    assert "TaskSucceeded" in printed


def test_a_permanent_failure_fails_the_run_with_its_reason(
    tmp_path: Path, pipeline: str, fake_command: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_FIRST", "permanent")
    code, status = run_pipeline(tmp_path, pipeline, fake_command)
    assert code == 1
    assert status["phase"] == "Failed"
    assert "model 'nope' does not exist" in status["message"]
    assert status["tasks"]["first"]["attempts"] == 1
    assert status["tasks"]["second"]["phase"] == "Skipped"
    assert status["tasks"]["side"]["phase"] == "Succeeded"
    assert not (tmp_path / "out" / "pipe" / "second.md").exists()


def test_a_retryable_failure_is_retried(
    tmp_path: Path, pipeline: str, fake_command: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_FIRST", "flaky")
    code, status = run_pipeline(tmp_path, pipeline, fake_command)
    assert code == 0
    assert status["tasks"]["first"]["attempts"] == 2


def test_a_task_is_killed_at_its_timeout(
    tmp_path: Path, pipeline: str, fake_command: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_FIRST", "sleep")
    started = time.monotonic()
    code, status = run_pipeline(tmp_path, pipeline, fake_command)
    assert code == 1
    assert time.monotonic() - started < 15
    first = status["tasks"]["first"]
    assert first["attempts"] == 2
    assert "timed out after 2s" in first["message"]


def test_set_overrides_an_input(tmp_path: Path, pipeline: str, fake_command: list[str]) -> None:
    code, status = run_pipeline(tmp_path, pipeline, fake_command, "topic=coffee")
    assert (code, status["phase"]) == (0, "Succeeded")
    assert "About coffee" in (tmp_path / "out" / "pipe" / "first.md").read_text()


def test_the_api_key_reaches_only_the_task_env(
    tmp_path: Path, pipeline: str, fake_command: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    record = tmp_path / "record.jsonl"
    monkeypatch.setenv("FAKE_RECORD", str(record))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-environment")
    out = tmp_path / "out"
    assert run_command([pipeline], output_dir=str(out), task_command=fake_command) == 0
    seen = [json.loads(line) for line in record.read_text().splitlines()]
    assert {entry["key"] for entry in seen} == {SECRET_KEY}
    assert {entry["openai"] for entry in seen} == {None}
    for path in out.rglob("*"):
        if path.is_file():
            assert SECRET_KEY not in path.read_text(), path


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["missing.yaml"], "cannot read"),
        (["{pipeline}", "--set", "colour=red"], "--set colour: no Workflow run has an input"),
        (["{pipeline}", "--set", "topic"], "expected name=value"),
        (["{pipeline}", "--workflow", "other"], "no Workflow 'other'"),
        (["{agents_only}"], "no Workflow in"),
        (["{invalid}"], "invalid.yaml: Workflow/pipe: spec.tasks[0].retries: "),
        (
            ["{unmatched}"],
            "Workflow/pipe: task 'side' agentSelector (skills [z]) matches no Agent of "
            "namespace 'default' in the files",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line(
    tmp_path: Path,
    pipeline: str,
    capsys: pytest.CaptureFixture[str],
    arguments: list[str],
    expected: str,
) -> None:
    agents_only = tmp_path / "agents.yaml"
    agents_only.write_text(PIPELINE.split("---")[0])
    invalid = tmp_path / "invalid.yaml"
    invalid.write_text(PIPELINE.replace("retries: 1,", "retries: 99,"))
    unmatched = tmp_path / "unmatched.yaml"
    unmatched.write_text(
        PIPELINE.replace("side, agent: worker", "side, agentSelector: {skills: [z]}")
    )
    paths = {
        "pipeline": pipeline,
        "agents_only": str(agents_only),
        "invalid": str(invalid),
        "unmatched": str(unmatched),
    }
    argv = ["run", *(argument.format(**paths) for argument in arguments)]
    argv += ["--output-dir", str(tmp_path / "out")]
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, lines
    assert expected in lines[0]
    assert "Traceback" not in captured.err + captured.out
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("file_at", ["out", "out/pipe"])
def test_an_output_dir_that_cannot_take_files_stops_the_run_before_any_task(
    tmp_path: Path,
    pipeline: str,
    fake_command: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    file_at: str,
) -> None:
    record = tmp_path / "record.jsonl"
    monkeypatch.setenv("FAKE_RECORD", str(record))
    (tmp_path / file_at).parent.mkdir(exist_ok=True)
    (tmp_path / file_at).write_text("a file")
    out = str(tmp_path / "out")
    assert run_command([pipeline], output_dir=out, task_command=fake_command) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].endswith(": not a directory"), lines
    assert not record.exists()


def test_an_agent_without_its_key_is_named_with_its_secret_and_the_fallback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    manifest = tmp_path / "keyless.yaml"
    second = PIPELINE.split("---")[0].replace("worker", "helper").replace("name: llm", "name: llm2")
    keyless = "---".join(part for part in PIPELINE.split("---") if "kind: Secret" not in part)
    manifest.write_text(
        keyless.replace("side, agent: worker", "side, agent: helper") + "---" + second
    )
    assert main(["run", str(manifest), "--output-dir", str(tmp_path / "out")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        f"{manifest}: Agent/{agent}: no API key: no Secret '{secret}' with key 'api-key' in "
        "the files, and OPENAI_API_KEY, its local fallback, is not set"
        for agent, secret in (("helper", "llm2"), ("worker", "llm"))
    ]
    assert not (tmp_path / "out").exists()


COUNTING_TASK = textwrap.dedent(
    """
    import json, os, sys
    args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
    live = os.environ["FAKE_LIVE"]
    mine = os.path.join(live, str(os.getpid()))
    open(mine, "w").close()
    with open(os.environ["FAKE_RECORD"], "a") as out:
        out.write(f"{len(os.listdir(live))}\\n")
    result = {"model": "fake-model", "usage": {"inputTokens": 1, "outputTokens": 1,
              "totalTokens": 2}, "bytes": 4}
    json.dump({**result, "output": "done"}, open(args["--output-file"], "w"))
    open(args["--termination-log"], "w").write(json.dumps({"succeeded": True, "result": result}))
    os.remove(mine)
    """
)
"""Counts the task processes alive as it starts: its file is made after it starts and removed
before it ends, so a count never exceeds the processes alive at once."""


def independent_tasks(*counts: int) -> str:
    """A scripted Agent ``worker`` and per count a Workflow ``wf<i>`` of that many tasks."""
    workflows = [
        "apiVersion: troupe.dev/v1alpha1\nkind: Workflow\n"
        f"metadata: {{name: wf{index}}}\nspec:\n  tasks:\n"
        + "".join(f"    - {{name: t{n}, agent: worker, prompt: go}}\n" for n in range(count))
        for index, count in enumerate(counts)
    ]
    agent = "apiVersion: troupe.dev/v1alpha1\nkind: Agent\nmetadata: {name: worker}\nspec: {}\n"
    return "---\n".join([agent, *workflows])


@pytest.mark.parametrize(
    ("counts", "parallelism"),
    [((200,), None), ((100, 100), 3)],
    ids=["200 tasks, the machine's default", "2 x 100 tasks, --parallelism 3 for the run"],
)
def test_no_more_task_processes_run_at_once_than_the_bound(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    counts: tuple[int, ...],
    parallelism: int | None,
) -> None:
    script, manifest, live = tmp_path / "count.py", tmp_path / "many.yaml", tmp_path / "live"
    script.write_text(COUNTING_TASK)
    manifest.write_text(independent_tasks(*counts))
    live.mkdir()
    record = tmp_path / "record.txt"
    monkeypatch.setenv("FAKE_LIVE", str(live))
    monkeypatch.setenv("FAKE_RECORD", str(record))
    code = run_command(
        [str(manifest)],
        output_dir=str(tmp_path / "out"),
        task_command=[sys.executable, "-S", str(script)],
        parallelism=parallelism,
    )
    assert code == 0
    alive = [int(line) for line in record.read_text().split()]
    assert len(alive) == sum(counts)
    assert max(alive) <= (parallelism or machine_parallelism()) < sum(counts)


@pytest.mark.parametrize(("stop", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_stop_signal_kills_every_task_keeps_what_succeeded_and_records_the_rest(
    tmp_path: Path, pipeline: str, fake_command: list[str], stop: signal.Signals, code: int
) -> None:
    record, scratch, out = tmp_path / "record.jsonl", tmp_path / "tmp", tmp_path / "out"
    scratch.mkdir()
    program = (  # the signal as a terminal or `timeout` gives it, even to a background job
        f"import signal, sys; signal.signal({int(stop)}, signal.SIG_DFL); "
        "from troupe_operator.local.command import run_command; "
        f"sys.exit(run_command([{pipeline!r}], output_dir={str(out)!r}, "
        f"task_command={fake_command!r}))"
    )
    env = {**os.environ, "FAKE_SECOND": "sleep", "FAKE_SIDE": "sleep"}
    env |= {"FAKE_RECORD": str(record), "TMPDIR": str(scratch)}
    runner = subprocess.Popen(
        [sys.executable, "-c", program], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    sleepers = wait_for(lambda: _sleepers(record, 2), timeout=30, what="second and side asleep")
    runner.send_signal(stop)
    _, err = runner.communicate(timeout=30)
    assert runner.returncode == code
    assert f"interrupted by {stop.name}" in err.decode()
    pids = [pid for entry in sleepers for pid in (entry["pid"], entry["child"])]
    wait_for(lambda: not any(map(_running, pids)), what=f"task processes {pids} gone")
    assert list(scratch.iterdir()) == []
    status = read_status(out / "pipe")
    assert (status["phase"], status["message"]) == ("Failed", f"interrupted by {stop.name}")
    phases = {name: task["phase"] for name, task in status["tasks"].items()}
    assert phases == {"first": "Succeeded", "second": "Cancelled", "side": "Cancelled"}
    assert status["tasks"]["side"]["message"] == f"cancelled: interrupted by {stop.name}"
    assert sorted(p.name for p in (out / "pipe").iterdir()) == ["first.md", "status.json"]


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _sleepers(path: Path, count: int) -> list[dict] | None:
    """The records of the tasks asleep (with a child of their own), once ``count`` are."""
    found = [entry for entry in _records(path) if entry["child"]]
    return found if len(found) == count else None


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie waits on whatever reaps in this container)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


PRIORITIES = """
apiVersion: troupe.dev/v1alpha1
kind: Agent
metadata: {name: worker}
spec: {}
---
apiVersion: troupe.dev/v1alpha1
kind: Workflow
metadata: {name: low}
spec:
  tasks:
    - {name: low-a, agent: worker, prompt: go}
    - {name: low-b, agent: worker, prompt: go}
---
apiVersion: troupe.dev/v1alpha1
kind: Workflow
metadata: {name: high}
spec:
  priority: 5
  tasks:
    - {name: high-1, agent: worker, prompt: go, priority: 1}
    - {name: high-5, agent: worker, prompt: go}
    - {name: high-3, agent: worker, prompt: go, priority: 3}
"""


def test_the_runs_slots_go_by_priority_across_and_within_workflows(
    tmp_path: Path, fake_command: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--parallelism 1: low starts first, alone; every slot that frees goes to high, its
    tasks by priority (high-5 has the Workflow's 5), before low's second task."""
    manifest, record = tmp_path / "priorities.yaml", tmp_path / "record.jsonl"
    manifest.write_text(PRIORITIES)
    monkeypatch.setenv("FAKE_RECORD", str(record))
    code = run_command(
        [str(manifest)],
        output_dir=str(tmp_path / "out"),
        task_command=fake_command,
        parallelism=1,
    )
    assert code == 0
    started = [entry["task"] for entry in _records(record)]
    assert started == ["low-a", "high-5", "high-3", "high-1", "low-b"]
