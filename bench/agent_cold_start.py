"""Agent cold start and footprint: how fast `troupe-agent task` turns an input into an output.

Runs the real console script as a subprocess N times against a loopback
OpenAI-compatible stub (and N times on the offline scripted model), the way
``troupe run`` starts it: TaskInput in ``TROUPE_TASK_INPUT``, the run's spec as
a file, one upstream output read from ``--outputs-dir``, the prompt rendered in
the process. Reports process start → output written, breaks out import time
with ``-X importtime``, and sums the installed size of the ``agent`` extra's
dependency closure. Prints Markdown; ``docs/performance.md`` ("Agent cold
start") quotes it.

    .venv/bin/python bench/agent_cold_start.py [--runs 7]

The model endpoint is the test harness's OpenAI stub (``tests.support.openai_stub``),
which answers every chat completion at once, so the figures are the runtime's own.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, for tests.support
from tests.support.openai_stub import OpenAIStub

AGENT_EXTRA_ROOT = "troupe"
BIN = Path(sys.executable).parent
TARGET_SECONDS = 1.5


def task_input(base_url: str | None) -> dict[str, Any]:
    model: dict[str, Any] = {"name": "bench-model"}
    if base_url:
        model["baseURL"] = base_url
    return {
        "workflow": "bench",
        "namespace": "default",
        "task": "write",
        "attempt": 1,
        "agentName": "executor",
        "agent": {"role": "executor", "model": model},
        "upstream": {"plan": "bench-plan-output"},
        "apiKeyEnv": "BENCH_API_KEY",
    }


SPEC = {
    "inputs": {"length": "one sentence"},
    "tasks": [
        {"name": "plan", "agent": "executor", "prompt": "Plan it."},
        {
            "name": "write",
            "agent": "executor",
            "prompt": "Write {{ inputs.length }} following: {{ tasks.plan.output }}",
            "dependsOn": ["plan"],
        },
    ],
}


def time_task_runs(base_url: str | None, runs: int, workdir: Path) -> list[float]:
    """Seconds from spawning ``troupe-agent task`` to its output file being written."""
    spec, outputs = workdir / "spec.json", workdir / "outputs"
    spec.write_text(json.dumps(SPEC))
    outputs.mkdir(exist_ok=True)
    (outputs / "bench-plan-output.json").write_text(json.dumps({"output": "1. Write it."}))
    env = {
        **os.environ,
        "TROUPE_TASK_INPUT": json.dumps(task_input(base_url)),
        "BENCH_API_KEY": "sk-bench-not-a-real-key",
    }
    timings = []
    for run in range(runs):
        output = workdir / f"output-{run}.json"
        started = time.time_ns()
        subprocess.run(
            [BIN / "troupe-agent", "task", "--spec", spec, "--outputs-dir", outputs,
             "--output-file", output, "--termination-log", workdir / "termination-log"],
            env=env, check=True, stderr=subprocess.DEVNULL, timeout=60,
        )  # fmt: skip
        timings.append((output.stat().st_mtime_ns - started) / 1e9)
    return timings


def import_times(module: str, top: int) -> list[tuple[str, float]]:
    """The ``top`` largest cumulative import times (seconds) of importing ``module``."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    entries = []
    for line in result.stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|\s*(\S+)", line)
        if match:
            entries.append((match.group(2), int(match.group(1)) / 1e6))
    return sorted(entries, key=lambda entry: entry[1], reverse=True)[:top]


def agent_extra_closure() -> list[metadata.Distribution]:
    """The installed distributions the ``agent`` extra pulls in (without troupe itself)."""
    pending = [
        Requirement(text)
        for text in metadata.requires(AGENT_EXTRA_ROOT) or []
        if Requirement(text).marker is not None
        and Requirement(text).marker.evaluate({"extra": "agent"})  # type: ignore[union-attr]
    ]
    seen: dict[str, metadata.Distribution] = {}
    while pending:
        requirement = pending.pop()
        name = requirement.name.lower().replace("_", "-")
        if name in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen[name] = dist
        for text in dist.requires or []:
            nested = Requirement(text)
            if nested.marker is None or nested.marker.evaluate({"extra": ""}):
                pending.append(nested)
    return sorted(seen.values(), key=lambda d: d.metadata["Name"].lower())


def installed_bytes(dist: metadata.Distribution) -> int:
    total = 0
    for file in dist.files or []:
        path = Path(str(file.locate()))
        if path.is_file():
            total += path.stat().st_size
    return total


def directory_bytes(directory: Path) -> int:
    return sum(path.stat().st_size for path in directory.rglob("*") if path.is_file())


def markdown_report(runs: int) -> str:
    with tempfile.TemporaryDirectory() as tmp, OpenAIStub() as stub:
        real = time_task_runs(stub.base_url, runs, Path(tmp))
        scripted = time_task_runs(None, runs, Path(tmp))
    lines = [
        f"Start → output written, `troupe-agent task --output-file`, {runs} runs each "
        f"(target ≤ {TARGET_SECONDS} s):",
        "",
        "| model | median s | min s | max s |",
        "|---|---|---|---|",
    ]
    for label, timings in (("OpenAI-compatible stub (loopback)", real), ("scripted", scripted)):
        lines.append(
            f"| {label} | {statistics.median(timings):.2f} | {min(timings):.2f} "
            f"| {max(timings):.2f} |"
        )
    for module in ("troupe_agent.task", "langchain_openai"):
        lines += ["", f"Import time, `python -X importtime -c 'import {module}'` (cumulative):", ""]
        lines += ["| module | s |", "|---|---|"]
        lines += [f"| `{name}` | {seconds:.3f} |" for name, seconds in import_times(module, 8)]
    sizes = sorted(
        ((d.metadata["Name"], installed_bytes(d)) for d in agent_extra_closure()),
        key=lambda item: item[1],
        reverse=True,
    )
    total = sum(size for _, size in sizes)
    pruned = directory_bytes(
        Path(str(metadata.distribution("kubernetes").locate_file("kubernetes/aio")))
    )
    lines += [
        "",
        f"Installed size of the `agent` extra's closure: {len(sizes)} distributions, "
        f"{total / 1e6:.1f} MB, of which `kubernetes/aio` (removed in Dockerfile.agent) "
        f"{pruned / 1e6:.1f} MB. Largest 10:",
        "",
        "| distribution | MB |",
        "|---|---|",
    ]
    lines += [f"| {name} | {size / 1e6:.1f} |" for name, size in sizes[:10]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    print(markdown_report(parser.parse_args().runs))


if __name__ == "__main__":
    main()
