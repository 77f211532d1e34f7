"""``troupe run`` with the real agent runtime (offline scripted model) on the shipped examples."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.openai_stub import OpenAIStub
from troupe_agent.scripted import PLACEHOLDER_BANNER

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


def test_the_for_each_example_fans_out_over_the_planners_topics_offline(tmp_path: Path) -> None:
    finished = troupe_run(str(EXAMPLES / "for-each.yaml"), "--output-dir", str(tmp_path))
    assert finished.returncode == 0, finished.stderr
    out = tmp_path / "for-each"
    status = json.loads((out / "status.json").read_text())
    assert (status["phase"], status["progress"]) == ("Succeeded", "3/3")
    topics = json.loads((out / "plan.md").read_text())["topics"]
    assert status["tasks"]["research"]["items"] == len(topics) == 3
    for index, topic in enumerate(topics):
        assert topic in (out / f"research.{index}.md").read_text()
    assert "(3 topics)" in (out / "write.md").read_text()  # tasks.research.outputs | length


def test_the_best_of_three_example_judges_offline_and_the_winner_goes_on(tmp_path: Path) -> None:
    finished = troupe_run(str(EXAMPLES / "best-of-three.yaml"), "--output-dir", str(tmp_path))
    assert finished.returncode == 0, finished.stderr
    status = json.loads((tmp_path / "best-of-three" / "status.json").read_text())
    assert status["message"] == "all 2 tasks succeeded"
    draft = status["tasks"]["draft"]
    # The scripted judge scores every draft 0 and no tokens are counted: candidate-1 wins.
    assert draft["resultOf"] == "draft.candidate-1"
    assert draft["message"] == "candidate-1 won with score 0 (3 of 3 candidates judged)"
    assert [c["agent"] for c in draft["candidates"]] == [
        "writer-plain",
        "writer-vivid",
        "writer-expert",
    ]
    assert {tuple(c["scores"]) for c in draft["candidates"]} == {(0, 0, 0)}
    assert status["tasks"]["draft.judge"]["phase"] == "Succeeded"
    winner = (tmp_path / "best-of-three" / "draft.md").read_text()
    assert "Role: executor" in winner  # writer-plain's; the other two are custom and researcher
    published = (tmp_path / "best-of-three" / "publish.md").read_text()
    assert f"keeping its length: {PLACEHOLDER_BANNER} Role: executor." in published


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


def test_a_selector_runs_the_task_on_the_agent_with_its_skills_and_labels(
    tmp_path: Path, openai_stub: OpenAIStub
) -> None:
    agents = [
        ("a", "{}", "[x]"),
        ("b", "{tier: silver}", "[x, y]"),
        ("c", "{tier: gold}", "[x, y]"),
    ]
    documents = [
        f"""apiVersion: troupe.dev/v1alpha1
kind: Agent
metadata: {{name: {name}, labels: {labels}}}
spec:
  skills: {skills}
  model: {{name: model-{name}, baseURL: "{openai_stub.base_url}"}}
"""
        for name, labels, skills in agents
    ]
    documents.append(
        """apiVersion: troupe.dev/v1alpha1
kind: Workflow
metadata: {name: chooser}
spec:
  tasks:
    - {name: only, agentSelector: {skills: [y], matchLabels: {tier: gold}}, prompt: "Say hello"}
"""
    )
    manifest = tmp_path / "chooser.yaml"
    manifest.write_text("---\n".join(documents))
    finished = troupe_run(str(manifest), "--output-dir", str(tmp_path / "out"))
    assert finished.returncode == 0, finished.stdout + finished.stderr
    status = json.loads((tmp_path / "out" / "chooser" / "status.json").read_text())
    assert status["tasks"]["only"]["agents"] == ["c"]
    assert [r.body["model"] for r in openai_stub.chat_requests if r.body] == ["model-c"]


def test_a_workflow_runs_its_template_with_inputs_from_the_files_and_set(
    tmp_path: Path, openai_stub: OpenAIStub
) -> None:
    """The template of the files resolved; a ConfigMap input pinned in the recorded spec, a
    Secret input only in the task process's environment, ``--set`` over both."""
    secret = "s3cr3t-codename-41"
    manifest = tmp_path / "templated.yaml"
    manifest.write_text(
        """
apiVersion: troupe.dev/v1alpha1
kind: Agent
metadata: {name: llm}
spec:
  model: {name: stub-model, baseURL: "BASE_URL", maxRetries: 0}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: style}
data: {tone: dry}
---
apiVersion: v1
kind: Secret
metadata: {name: project}
stringData: {codename: SECRET}
---
apiVersion: troupe.dev/v1alpha1
kind: WorkflowTemplate
metadata: {name: brief}
spec:
  inputs: {topic: tea, tone: warm, audience: everyone, codename: unnamed}
  tasks:
    - {name: draft, agent: llm, prompt: "Draft {{ inputs.topic }} for {{ inputs.audience }}"}
    - name: polish
      agent: llm
      dependsOn: [draft]
      prompt: "Polish, {{ inputs.tone }}, for {{ inputs.codename }}: {{ tasks.draft.output }}"
---
apiVersion: troupe.dev/v1alpha1
kind: Workflow
metadata: {name: coffee-brief}
spec:
  workflowTemplateRef: {name: brief}
  inputs: {topic: coffee}
  inputsFrom:
    - {name: tone, configMapKeyRef: {name: style, key: tone}}
    - {name: codename, secretKeyRef: {name: project, key: codename}}
""".replace("BASE_URL", openai_stub.base_url).replace("SECRET", secret)
    )
    out = tmp_path / "out"
    finished = troupe_run(str(manifest), "--output-dir", str(out), "--set", "audience=baristas")
    assert finished.returncode == 0, finished.stdout + finished.stderr
    prompts = [
        str(request.body["messages"][-1]["content"]) for request in openai_stub.chat_requests
    ]
    assert prompts[0] == "Draft coffee for baristas"
    assert prompts[1].startswith(f"Polish, dry, for {secret}: ")
    status_text = (out / "coffee-brief" / "status.json").read_text()
    status = json.loads(status_text)
    assert (status["phase"], status["progress"]) == ("Succeeded", "2/2")
    assert status["resolvedFrom"]["workflowTemplate"] == {"name": "brief"}
    assert secret not in status_text + finished.stdout + finished.stderr


def test_an_agents_max_concurrency_caps_its_processes_across_the_workflows(
    tmp_path: Path, openai_stub: OpenAIStub
) -> None:
    openai_stub.limit_concurrency(1, hold=0.5)  # a second request at once would get a 429
    documents = [
        f"""apiVersion: troupe.dev/v1alpha1
kind: Agent
metadata: {{name: single}}
spec:
  model: {{name: stub-model, baseURL: "{openai_stub.base_url}", maxRetries: 0, maxConcurrency: 1}}
"""
    ] + [
        f"""apiVersion: troupe.dev/v1alpha1
kind: Workflow
metadata: {{name: {name}}}
spec:
  tasks:
    - {{name: a, agent: single, prompt: "Say a"}}
    - {{name: b, agent: single, prompt: "Say b"}}
"""
        for name in ("left", "right")
    ]
    manifest = tmp_path / "capped.yaml"
    manifest.write_text("---\n".join(documents))
    env = {**os.environ, "OPENAI_API_KEY": "sk-test"}
    finished = troupe_run(
        str(manifest), "--parallelism", "4", "--output-dir", str(tmp_path / "out"), env=env
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert (openai_stub.throttled, openai_stub.most_in_flight) == (0, 1)
    assert len(openai_stub.chat_requests) == 4


def test_a_second_local_run_with_the_same_cache_dir_makes_no_model_request(
    tmp_path: Path, openai_stub: OpenAIStub
) -> None:
    manifest = tmp_path / "memo.yaml"
    manifest.write_text(
        (EXAMPLES / "memoized.yaml")
        .read_text()
        .replace(
            "role: researcher",
            f'role: researcher\n  model: {{name: m, baseURL: "{openai_stub.base_url}"}}',
        )
    )
    cache = tmp_path / "cache"

    def run(out: str, *extra: str) -> dict[str, Any]:
        finished = troupe_run(
            str(manifest), "--output-dir", str(tmp_path / out), "--cache-dir", str(cache), *extra
        )
        assert finished.returncode == 0, finished.stdout + finished.stderr
        return dict(json.loads((tmp_path / out / "memoized-brief" / "status.json").read_text()))

    first = run("one")
    assert len(openai_stub.chat_requests) == 3
    assert {task.get("reason") for task in first["tasks"].values()} == {None}
    second = run("two")
    assert len(openai_stub.chat_requests) == 3, "the second run asked the model"
    assert second["usage"]["totalTokens"] == 0
    assert all(task["reason"] == "Cached" for task in second["tasks"].values())
    for task in ("research", "pitch", "review"):
        one = (tmp_path / "one" / "memoized-brief" / f"{task}.md").read_text()
        assert (tmp_path / "two" / "memoized-brief" / f"{task}.md").read_text() == one
    third = run("three", "--set", "audience=data teams")
    assert len(openai_stub.chat_requests) == 5, "only pitch and review run again"
    assert third["tasks"]["research"]["reason"] == "Cached"
    assert (cache / "default").is_dir() and len(list((cache / "default").glob("*.json"))) == 5
