"""``troupe run`` with the real agent runtime (offline scripted model) on the shipped examples."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.openai_stub import OpenAIStub

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def troupe_run(
    *arguments: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "troupe_operator", "run", *arguments],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        env=env,
    )


@pytest.mark.parametrize(
    ("example", "workflow", "tasks"),
    [
        ("serial-pipeline.yaml", "launch-brief", ["research", "plan", "write", "review"]),
        (
            "fan-out-fan-in.yaml",
            "vendor-assessment",
            ["financial-analysis", "security-analysis", "product-analysis", "assessment"],
        ),
    ],
)
def test_an_example_runs_with_the_scripted_model(
    tmp_path: Path, example: str, workflow: str, tasks: list[str]
) -> None:
    finished = troupe_run(str(EXAMPLES / example), "--output-dir", str(tmp_path))
    assert finished.returncode == 0, finished.stderr
    notes = [line for line in finished.stdout.splitlines() if "offline scripted model" in line]
    assert len(notes) == 1
    status = json.loads((tmp_path / workflow / "status.json").read_text())
    assert status["phase"] == "Succeeded"
    assert status["progress"] == f"{len(tasks)}/{len(tasks)}"
    for task in tasks:
        assert status["tasks"][task]["model"].startswith("troupe-scripted")
        assert (tmp_path / workflow / f"{task}.md").read_text().strip()


def test_the_triage_example_runs_one_branch_offline(tmp_path: Path) -> None:
    finished = troupe_run(str(EXAMPLES / "triage.yaml"), "--output-dir", str(tmp_path))
    assert finished.returncode == 0, finished.stderr
    status = json.loads((tmp_path / "triage" / "status.json").read_text())
    assert status["message"] == "3 tasks succeeded, 2 skipped by conditions"
    verdict = json.loads((tmp_path / "triage" / "triage.md").read_text())
    assert verdict == {"deep": True, "compare": False, "severity": 1, "kind": "incident"}
    assert status["tasks"]["triage"]["fields"] == {"deep": True, "compare": False, "severity": 1}
    skipped = {name for name, task in status["tasks"].items() if task["phase"] == "Skipped"}
    assert skipped == {"comparison", "comparison-table"}
    assert {status["tasks"][name]["reason"] for name in skipped} == {"ConditionFalse"}
    assert not (tmp_path / "triage" / "comparison.md").exists()


def test_the_deep_research_example_runs_its_supervisor_offline(tmp_path: Path) -> None:
    finished = troupe_run(str(EXAMPLES / "deep-research.yaml"), "--output-dir", str(tmp_path))
    assert finished.returncode == 0, finished.stderr
    status = json.loads((tmp_path / "deep-research" / "status.json").read_text())
    assert (status["phase"], status["progress"]) == ("Succeeded", "3/3")
    research = status["tasks"]["research"]
    assert research["resultOf"] == "research.turn-1"  # the scripted supervisor finishes at once
    assert research["supervise"] == {
        "iterations": 1,
        "turns": [{"unit": "research.turn-1", "delegations": [], "finished": True}],
    }
    assert status["tasks"]["research.turn-1"]["decision"] == {"members": [], "finished": True}
    answer = (tmp_path / "deep-research" / "research.md").read_text()
    assert "Role: supervisor" in answer
    report = (tmp_path / "deep-research" / "report.md").read_text()
    assert "from these research notes: [scripted placeholder" in report  # the answer, rendered


def test_an_unreachable_model_fails_the_run(tmp_path: Path) -> None:
    manifest = tmp_path / "unreachable.yaml"
    manifest.write_text(
        """
apiVersion: troupe.dev/v1alpha1
kind: Agent
metadata: {name: remote}
spec:
  model: {baseURL: "http://127.0.0.1:9/v1", maxRetries: 0, timeoutSeconds: 2}
---
apiVersion: troupe.dev/v1alpha1
kind: Workflow
metadata: {name: doomed}
spec:
  tasks:
    - {name: only, agent: remote, prompt: "Say hello"}
"""
    )
    finished = troupe_run(str(manifest), "--output-dir", str(tmp_path / "out"))
    assert finished.returncode == 1, finished.stdout + finished.stderr
    status = json.loads((tmp_path / "out" / "doomed" / "status.json").read_text())
    assert status["phase"] == "Failed"
    assert status["tasks"]["only"]["message"]
    assert "Traceback" not in finished.stdout + finished.stderr


def test_an_agent_without_a_key_secret_calls_its_endpoint_without_authorization(
    tmp_path: Path, openai_stub: OpenAIStub
) -> None:
    manifest = tmp_path / "keyless.yaml"
    manifest.write_text(
        f"""
apiVersion: troupe.dev/v1alpha1
kind: Agent
metadata: {{name: local-llm}}
spec:
  model: {{name: stub-model, baseURL: "{openai_stub.base_url}"}}
---
apiVersion: troupe.dev/v1alpha1
kind: Workflow
metadata: {{name: keyless}}
spec:
  tasks:
    - {{name: only, agent: local-llm, prompt: "Say hello"}}
"""
    )
    env = {**os.environ, "OPENAI_API_KEY": "sk-ambient-2c9d41e7b3"}
    finished = troupe_run(str(manifest), "--output-dir", str(tmp_path / "out"), env=env)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert [request.path for request in openai_stub.chat_requests] == ["/v1/chat/completions"]
    headers = [name.lower() for name in openai_stub.chat_requests[0].headers]
    assert "authorization" not in headers
