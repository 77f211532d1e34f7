"""A finished 1000-task Workflow's status stays small enough for etcd (and for us)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from troupe_operator.api import (
    SCRIPTED_MODEL_NAME,
    AgentSpec,
    TaskReport,
    TaskResult,
    TokenUsage,
    WorkflowPhase,
    WorkflowSpec,
    WorkflowStatus,
)
from troupe_operator.api.workflow import PREVIEW_CHARS
from troupe_operator.workflow import (
    CacheEntry,
    CreateTask,
    JobState,
    Observation,
    ObservedJob,
    WorkflowRef,
    reconcile,
)

LIMIT_BYTES = 256 * 1024
T0 = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("workflow", "names", "cache"),
    [
        ("wide", [f"task-{i:04d}" for i in range(1000)], None),
        ("w" * 63, [f"task-{i:04d}-" + "n" * 53 for i in range(1000)], None),
        ("w" * 63, [f"task-{i:04d}-" + "n" * 53 for i in range(1000)], {"maxAge": "1h"}),
    ],
    ids=["typical-names", "longest-names", "memoized-with-digests"],
)
def test_a_finished_thousand_task_status_stays_under_256_kib(
    workflow: str, names: list[str], cache: dict[str, str] | None
) -> None:
    spec = WorkflowSpec.model_validate(
        {
            "tasks": [{"name": name, "agent": "a", "prompt": "p"} for name in names],
            **({"cache": cache} if cache else {}),
        }
    )
    usage = TokenUsage(input_tokens=123_456, output_tokens=654_321, total_tokens=777_777)
    report = TaskReport(
        succeeded=True,
        result=TaskResult(model=SCRIPTED_MODEL_NAME, usage=usage, bytes=10_000),
        preview=("word " * 2000)[:PREVIEW_CHARS],
        digest="d" * 64,
    )

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
            agents={"a": AgentSpec()},
        )

    started = reconcile(observe(WorkflowStatus(), []))
    jobs = [
        ObservedJob(action.job_name, action.task, 1, JobState.SUCCEEDED, T0, T0, report=report)
        for action in started.of_type(CreateTask)
    ]
    assert len(jobs) == 1000
    finished = reconcile(observe(started.status, jobs)).status
    assert finished.phase == WorkflowPhase.SUCCEEDED
    size = len(json.dumps(finished.to_wire()).encode())
    assert size <= LIMIT_BYTES, f"status is {size} bytes"


def test_a_small_workflow_keeps_full_detail() -> None:
    spec = WorkflowSpec.model_validate({"tasks": [{"name": "a", "agent": "a", "prompt": "p"}]})
    run = WorkflowRef("ns", "wf", "uid")
    report = TaskReport(succeeded=True, result=TaskResult(model="m", bytes=500), preview="t" * 200)

    def observe(status: WorkflowStatus, jobs: list[ObservedJob]) -> Observation:
        return Observation("ns", "wf", "uid", 1, spec, status, T0, jobs, agents={"a": AgentSpec()})

    started = reconcile(observe(WorkflowStatus(), []))
    job = ObservedJob(run.job_name("a", 1), "a", 1, JobState.SUCCEEDED, T0, T0, report=report)
    task = reconcile(observe(started.status, [job])).status.tasks["a"]
    assert task.job == run.job_name("a", 1)
    assert task.output is not None and task.output.config_map == run.output_config_map("a")
    assert task.preview is not None and len(task.preview) == 200


def test_the_size_bounds_hold_for_the_largest_possible_task_and_run() -> None:
    """fit_status skips measuring small statuses; the bounds it trusts must really bound."""
    from troupe_operator.api import (
        MAX_CANDIDATES,
        MAX_CRITERIA,
        CachedFrom,
        CandidateStatus,
        Condition,
        ConditionStatus,
        ModelCalls,
        OutputRef,
        TaskPhase,
        TaskStatus,
    )
    from troupe_operator.workflow.compaction import MOST_RUN_BYTES, MOST_TASK_BYTES, wire_size
    from troupe_operator.workflow.summary import MESSAGE_CHARS

    wide = "\u2028"  # escaped to six bytes, like any non-ASCII character
    usage = TokenUsage(input_tokens=10**12, output_tokens=10**12, total_tokens=2 * 10**12)
    task = TaskStatus(
        phase=TaskPhase.SUCCEEDED,
        attempts=11,
        job="j" * 63,
        started_at=T0,
        finished_at=T0,
        message=wide * MESSAGE_CHARS,
        model=wide * 100,
        output=OutputRef(config_map="c" * 63, key="output", bytes=10**9),
        preview=wide * PREVIEW_CHARS,
        usage=usage,
        digest="f" * 64,
        cached=CachedFrom(entry="troupe-cache-" + "k" * 40, key="k" * 40, created_at=T0),
        calls=ModelCalls(
            total=10**12,
            failed=dict.fromkeys(
                ("connection", "malformed", "timeout", "error", "other", "429", "500", "503"),
                10**12,
            ),
        ),
    )
    noisy = [0.1 + 0.2] * MAX_CRITERIA  # 0.30000000000000004: the longest a score prints
    candidates = [
        CandidateStatus(unit="u" * 63, agent="a" * 63, tokens=10**15, score=-1e6 / 7, scores=noisy)
    ] * MAX_CANDIDATES
    scores = {f"candidate-{i}": noisy for i in range(1, MAX_CANDIDATES + 1)}
    for judging in ({"candidates": candidates}, {"scores": scores}):
        one = WorkflowStatus(tasks={"t" * 63: task.model_copy(update=judging)})
        assert wire_size(one) - wire_size(WorkflowStatus()) <= MOST_TASK_BYTES
    condition = Condition(
        type="SpecChangeRefused",
        status=ConditionStatus.TRUE,
        reason="SpecChangeRefused",
        message=wide * MESSAGE_CHARS,
        last_transition_time=T0,
        observed_generation=10**9,
    )
    run = WorkflowStatus(
        phase=WorkflowPhase.FAILED,
        progress="1000/1000",
        started_at=T0,
        finished_at=T0,
        duration="99h59m59s",
        message=wide * MESSAGE_CHARS,
        usage=usage,
        observed_generation=10**9,
        spec_hash="f" * 64,
        conditions=[
            condition.model_copy(update={"type": kind})
            for kind in ("Ready", "Succeeded", "Failed", "SpecChangeRefused")
        ],
    )
    assert wire_size(run) <= MOST_RUN_BYTES


def test_a_thousand_tasks_served_from_the_cache_stay_under_256_kib() -> None:
    names = [f"task-{i:04d}-" + "n" * 53 for i in range(1000)]
    spec = WorkflowSpec.model_validate(
        {
            "tasks": [{"name": name, "agent": "a", "prompt": f"p {name}"} for name in names],
            "cache": {"maxAge": "1h"},
        }
    )
    preview = ("word " * 2000)[:PREVIEW_CHARS]
    report = TaskReport(
        succeeded=True,
        result=TaskResult(model=SCRIPTED_MODEL_NAME, bytes=10_000),
        preview=preview,
        digest="d" * 64,
    )

    def observe(cache: dict[str, CacheEntry]) -> Observation:
        return Observation(
            "ns",
            "w" * 63,
            "uid",
            1,
            spec,
            WorkflowStatus(),
            T0 + timedelta(hours=0.5),
            agents={"a": AgentSpec()},
            cache=cache,
        )

    targets = [a.task_input.cache_entry for a in reconcile(observe({})).of_type(CreateTask)]
    cache = {t.key: CacheEntry(t.name, T0, "d" * 64, report) for t in targets if t is not None}
    assert len(cache) == 1000
    finished = reconcile(observe(cache)).status
    assert finished.phase == WorkflowPhase.SUCCEEDED
    assert all(task.cached is not None for task in finished.tasks.values())
    size = len(json.dumps(finished.to_wire()).encode())
    assert size <= LIMIT_BYTES, f"status is {size} bytes"
