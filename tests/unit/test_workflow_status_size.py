"""A finished 1000-task Workflow's status stays small enough for etcd (and for us)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from troupe_operator.api import (
    AgentSpec,
    TaskResult,
    TokenUsage,
    WorkflowPhase,
    WorkflowSpec,
    WorkflowStatus,
)
from troupe_operator.api.task_io import SCRIPTED_MODEL_NAME
from troupe_operator.workflow import (
    CreateTask,
    JobState,
    Observation,
    ObservedJob,
    TaskOutput,
    reconcile,
)

LIMIT_BYTES = 256 * 1024
T0 = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("workflow", "names"),
    [
        ("wide", [f"task-{i:04d}" for i in range(1000)]),
        ("w" * 63, [f"task-{i:04d}-" + "n" * 53 for i in range(1000)]),
    ],
    ids=["typical-names", "longest-names"],
)
def test_a_finished_thousand_task_status_stays_under_256_kib(
    workflow: str, names: list[str]
) -> None:
    spec = WorkflowSpec.model_validate(
        {"tasks": [{"name": name, "agent": "a", "prompt": "p"} for name in names]}
    )
    usage = TokenUsage(input_tokens=123_456, output_tokens=654_321, total_tokens=777_777)
    outputs = {
        name: TaskOutput("word " * 2000, TaskResult(model=SCRIPTED_MODEL_NAME, usage=usage))
        for name in names
    }

    def observe(status: WorkflowStatus, jobs: list[ObservedJob]) -> Observation:
        return Observation(
            namespace="ns",
            name=workflow,
            uid="uid",
            generation=1,
            spec=spec,
            status=status,
            now=T0 + timedelta(hours=1, microseconds=123),
            jobs=jobs,
            outputs=outputs,
            agents={"a": AgentSpec()},
        )

    started = reconcile(observe(WorkflowStatus(), []))
    jobs = [
        ObservedJob(action.job_name, action.task, 1, JobState.SUCCEEDED, T0, T0)
        for action in started.of_type(CreateTask)
    ]
    assert len(jobs) == 1000
    finished = reconcile(observe(started.status, jobs)).status
    assert finished.phase == WorkflowPhase.SUCCEEDED
    size = len(json.dumps(finished.to_wire()).encode())
    assert size <= LIMIT_BYTES, f"status is {size} bytes"


def test_a_small_workflow_keeps_full_detail() -> None:
    spec = WorkflowSpec.model_validate({"tasks": [{"name": "a", "agent": "a", "prompt": "p"}]})
    outputs = {"a": TaskOutput("text " * 100, TaskResult(model="m"))}
    observation = Observation(
        "ns", "wf", "uid", 1, spec, WorkflowStatus(), T0, agents={"a": AgentSpec()}
    )
    started = reconcile(observation)
    job = ObservedJob("wf-a-1", "a", 1, JobState.SUCCEEDED, T0, T0)
    task = reconcile(
        Observation(
            "ns", "wf", "uid", 1, spec, started.status, T0, [job], outputs, {"a": AgentSpec()}
        )
    ).status.tasks["a"]
    assert task.job == "wf-a-1"
    assert task.output is not None and task.output.config_map == "wf-a-1-out"
    assert task.preview is not None and len(task.preview) == 200
