"""Best of N in the core: the winner rule as a table, candidates and a judge as units,
failures, and the static checks; driven through the simulated cluster of the core tests."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from tests.unit.test_workflow_core import RUN, Cluster, created_tasks, result, workflow
from troupe_operator.api import AgentSpec, TaskPhase, TaskReport, WorkflowPhase, WorkflowSpec
from troupe_operator.spec_checks import check_workflow
from troupe_operator.workflow import CreateTask, DeleteJob, JobState, PrepareRun
from troupe_operator.workflow.candidates import pick

ACCEPTANCE = [[0.9, 0.5, 0.8], [0.6, 0.9, 0.6], [0.5, 0.5, 0.5]]
WEIGHTS = [0.4, 0.3, 0.3]
CRITERIA = [
    {"name": n, "weight": w} for n, w in zip(("accuracy", "depth", "clarity"), WEIGHTS, strict=True)
]
AGENTS = {name: AgentSpec() for name in ("a", "b", "c", "judge", "agent")}


@pytest.mark.parametrize(
    ("scores", "weights", "penalty", "tokens", "totals", "winner"),
    [
        # The acceptance numbers: weighted .75, .69, .50; no penalty → candidate 1.
        (ACCEPTANCE, WEIGHTS, 0, [3000, 1000, 500], [0.75, 0.69, 0.5], 0),
        # 0.1 per 1,000 tokens: .75 - .30, .69 - .10, .50 - .05 → the cheaper candidate 2.
        (ACCEPTANCE, WEIGHTS, 0.1, [3000, 1000, 500], [0.45, 0.59, 0.45], 1),
        # 1 per 1,000 tokens: .75 - 3, .69 - 1, .50 - .2 → the cheapest, candidate 3.
        (ACCEPTANCE, WEIGHTS, 1, [3000, 1000, 200], [-2.25, -0.31, 0.3], 2),
        # A tie goes to the lowest number, float noise included (.1 + .2 against .3).
        ([[1, 1, 0], [0, 0, 1]], [0.1, 0.2, 0.3], 0, [0, 0], [0.3, 0.3], 0),
        ([[0.5], [0.5], [0.5]], [1], 0, [10, 10, 10], [0.5, 0.5, 0.5], 0),
        # A candidate that failed is not judged and cannot win.
        ([None, [0.1], [0.2]], [1], 0, [0, 5, 5], [None, 0.1, 0.2], 2),
        # The scripted judge scores everything 0: candidate 1.
        ([[0, 0], [0, 0]], [1, 2], 0.5, [0, 0], [0, 0], 0),
    ],
)
def test_the_winner_is_the_best_weighted_score_minus_the_cost_penalty(
    scores: list[list[float] | None],
    weights: list[float],
    penalty: float,
    tokens: list[int],
    totals: list[float | None],
    winner: int,
) -> None:
    picked = pick(scores, weights, penalty, tokens)
    assert picked.scores == totals
    assert picked.winner == winner


def best_of_three(penalty: float = 0, retries: int = 0, **candidates: Any) -> WorkflowSpec:
    judge = {"agent": "judge", "criteria": CRITERIA, "costPenalty": penalty}
    return workflow(
        {
            "name": "draft",
            "agent": "a",
            "retries": retries,
            "candidates": {"judge": judge, **(candidates or {"agents": ["a", "b", "c"]})},
        },
        {"name": "use", "deps": ["draft"], "prompt": "Polish {{ tasks.draft.output }}"},
    )


KEYS = [f"draft.candidate-{i}" for i in (1, 2, 3)]


def judge_reports(cluster: Cluster, scores: dict[str, list[float]] | None) -> None:
    job = cluster.running("draft.judge")
    report = TaskReport(succeeded=True, result=result(50, 10), preview="{}", scores=scores)
    cluster.jobs[job.name] = replace(
        job, state=JobState.SUCCEEDED, finished_at=cluster.now, report=report
    )


def candidates_run(cluster: Cluster, tokens: list[int]) -> CreateTask:
    """Start the candidates, let each succeed with ``tokens`` (half of its total); the judge."""
    started = cluster.step()
    assert created_tasks(started) == [(key, 1) for key in KEYS]
    for key, used in zip(KEYS, tokens, strict=True):
        cluster.succeed(key, tokens=used)
    [judge] = cluster.step().of_type(CreateTask)
    return judge


def test_best_of_three_runs_three_candidates_then_a_judge_and_the_winner_feeds_downstream() -> None:
    cluster = Cluster(best_of_three(), AGENTS)
    first = cluster.step()
    starts = first.of_type(CreateTask)
    assert [(s.task, s.task_input.agent_name, s.task_input.task) for s in starts] == [
        (key, agent, "draft") for key, agent in zip(KEYS, "abc", strict=True)
    ]
    assert [s.task_input.instance for s in starts] == KEYS
    [prepare] = first.of_type(PrepareRun)
    assert set(prepare.outputs) == {RUN.output_config_map(k) for k in [*KEYS, "draft.judge", "use"]}
    parent = cluster.task("draft")
    assert parent.phase == TaskPhase.RUNNING and parent.attempts == 0 and parent.job is None
    assert [(c.unit, c.agent) for c in parent.candidates] == list(zip(KEYS, "abc", strict=True))
    for key in KEYS[:2]:
        cluster.succeed(key, tokens=1500)
    assert created_tasks(cluster.step()) == []  # the judge waits for every candidate
    assert cluster.task("draft").message == "2 of 3 candidates finished"
    cluster.succeed(KEYS[2], tokens=250)
    [judge] = cluster.step().of_type(CreateTask)
    assert (judge.task, judge.task_input.agent_name) == ("draft.judge", "judge")
    assert judge.task_input.candidates == {
        f"candidate-{i}": RUN.output_config_map(key) for i, key in enumerate(KEYS, 1)
    }
    assert cluster.task("draft").message == "judging 3 of 3 candidates"
    judge_reports(cluster, {f"candidate-{i}": row for i, row in enumerate(ACCEPTANCE, 1)})
    [use] = cluster.step().of_type(CreateTask)
    parent = cluster.task("draft")
    assert parent.phase == TaskPhase.SUCCEEDED and parent.result_of == KEYS[0]
    assert parent.message == "candidate-1 won with score 0.75 (3 of 3 candidates judged)"
    assert [(c.tokens, c.scores, c.score) for c in parent.candidates] == [
        (3000, ACCEPTANCE[0], 0.75),
        (3000, ACCEPTANCE[1], 0.69),
        (500, ACCEPTANCE[2], 0.5),
    ]
    assert parent.output == cluster.task(KEYS[0]).output and parent.usage is None
    assert cluster.task("draft.judge").scores == {
        f"candidate-{i}": row for i, row in enumerate(ACCEPTANCE, 1)
    }
    assert use.task_input.upstream == {"draft": RUN.output_config_map(KEYS[0])}
    assert "TaskExpanded" in [event.reason for event in cluster.events]
    cluster.succeed("use")
    cluster.step()
    assert cluster.status.phase == WorkflowPhase.SUCCEEDED
    assert cluster.status.message == "all 2 tasks succeeded"
    assert cluster.status.usage.total_tokens == 3000 + 3000 + 500 + 100 + 20


def test_a_cost_penalty_lets_the_cheaper_candidate_win_as_computed() -> None:
    cluster = Cluster(best_of_three(penalty=0.1), AGENTS)
    candidates_run(cluster, [1500, 500, 250])  # 3000, 1000 and 500 tokens
    judge_reports(cluster, {f"candidate-{i}": row for i, row in enumerate(ACCEPTANCE, 1)})
    cluster.step()
    parent = cluster.task("draft")
    assert [c.score for c in parent.candidates] == [0.45, 0.59, 0.45]
    assert parent.result_of == KEYS[1]


def test_count_runs_the_tasks_own_agent_that_many_times() -> None:
    cluster = Cluster(best_of_three(count=2), AGENTS)
    starts = cluster.step().of_type(CreateTask)
    assert [(s.task, s.task_input.agent_name) for s in starts] == [(k, "a") for k in KEYS[:2]]


def test_parallelism_counts_candidates_not_their_parent() -> None:
    spec = best_of_three().model_copy(update={"parallelism": 2})
    cluster = Cluster(spec, AGENTS)
    assert created_tasks(cluster.step()) == [(KEYS[0], 1), (KEYS[1], 1)]
    cluster.succeed(KEYS[0])
    assert created_tasks(cluster.step()) == [(KEYS[2], 1)]


def test_a_failed_candidate_is_not_judged_and_the_run_still_succeeds() -> None:
    cluster = Cluster(best_of_three().model_copy(update={"fail_fast": True}), AGENTS)
    cluster.step()
    cluster.fail(KEYS[0])
    assert cluster.step().of_type(DeleteJob) == []  # failFast waits for the task's verdict
    cluster.succeed(KEYS[1])
    cluster.succeed(KEYS[2])
    [judge] = cluster.step().of_type(CreateTask)
    assert list(judge.task_input.candidates or {}) == ["candidate-2", "candidate-3"]
    judge_reports(cluster, {"candidate-2": [0.1, 0.1, 0.1], "candidate-3": [0.2, 0.2, 0.2]})
    cluster.step()
    parent = cluster.task("draft")
    assert parent.result_of == KEYS[2]
    assert parent.message == "candidate-3 won with score 0.2 (2 of 3 candidates judged)"
    assert parent.candidates[0].scores is None and parent.candidates[0].score is None
    cluster.succeed("use")
    cluster.step()
    assert cluster.status.phase == WorkflowPhase.SUCCEEDED


def test_all_candidates_failing_fails_the_task_without_a_judge() -> None:
    cluster = Cluster(best_of_three(), AGENTS)
    cluster.step()
    for key in KEYS:
        cluster.fail(key)
    assert created_tasks(cluster.step()) == []
    parent = cluster.task("draft")
    assert (parent.phase, parent.reason) == (TaskPhase.FAILED, "AllCandidatesFailed")
    assert (
        parent.message
        == "all 3 candidates failed; candidate-1: attempt 1 failed: model unreachable"
    )
    assert "draft.judge" not in cluster.status.tasks
    assert cluster.task("use").phase == TaskPhase.SKIPPED
    assert cluster.status.phase == WorkflowPhase.FAILED


def test_a_lone_surviving_candidate_wins_without_paying_for_a_judge() -> None:
    cluster = Cluster(best_of_three(), AGENTS)
    cluster.step()
    cluster.fail(KEYS[0])
    cluster.succeed(KEYS[1], tokens=40)
    cluster.fail(KEYS[2])
    [use] = cluster.step().of_type(CreateTask)
    assert use.task == "use" and "draft.judge" not in cluster.status.tasks
    parent = cluster.task("draft")
    assert (parent.phase, parent.result_of) == (TaskPhase.SUCCEEDED, KEYS[1])
    assert parent.message == "candidate-2 won unjudged: the only one of 3 candidates that succeeded"
    assert [c.score for c in parent.candidates] == [None, None, None]
    assert use.task_input.upstream == {"draft": RUN.output_config_map(KEYS[1])}


@pytest.mark.parametrize(
    ("judging", "message"),
    [
        ("fails", "the judge failed: attempt 2 failed: model unreachable"),
        (None, "the judge reported no scores for candidate-1 on the 3 criteria"),
        ({"candidate-1": [1.0]}, "the judge reported no scores for candidate-1 on the 3 criteria"),
    ],
)
def test_a_judge_that_fails_or_leaves_no_scores_fails_the_task(judging: Any, message: str) -> None:
    cluster = Cluster(best_of_three(retries=1), AGENTS)
    candidates_run(cluster, [1, 1, 1])
    if judging == "fails":
        cluster.fail("draft.judge")
        assert created_tasks(cluster.step()) == [("draft.judge", 2)]  # the task's retries
        cluster.fail("draft.judge")
    else:
        judge_reports(cluster, judging)
    cluster.step()
    parent = cluster.task("draft")
    assert (parent.phase, parent.reason) == (TaskPhase.FAILED, "JudgeFailed")
    assert parent.message.startswith(message)
    assert cluster.status.phase == WorkflowPhase.FAILED


def test_a_restarted_operator_starts_nothing_twice() -> None:
    cluster = Cluster(best_of_three(), AGENTS)
    judge = candidates_run(cluster, [1, 1, 1])
    again = cluster.step()  # the same observation, as after a restart
    assert created_tasks(again) == [] and judge.job_name in cluster.jobs


def test_a_missing_judge_agent_waits_for_it() -> None:
    cluster = Cluster(best_of_three(), {n: AgentSpec() for n in "abc"})
    candidates_run_without_judge = cluster.step()
    assert len(candidates_run_without_judge.of_type(CreateTask)) == 3
    for key in KEYS:
        cluster.succeed(key)
    decision = cluster.step()
    assert decision.of_type(CreateTask) == [] and decision.waiting_for_agents == {"judge"}


def checked(name: str = "draft", agent: str = "a", **candidates: Any) -> list[str]:
    judge = {"agent": "judge", "criteria": CRITERIA, **candidates.pop("judge", {})}
    spec = workflow({"name": name, "agent": agent, "candidates": {"judge": judge, **candidates}})
    return check_workflow("wf", spec, known_agents=["a", "b", "judge"])


@pytest.mark.parametrize(
    ("problem", "kwargs"),
    [
        ("set exactly one of agents", {"count": 2, "agents": ["a", "b"]}),
        ("set exactly one of agents", {}),
        ("candidates.agents lists 'a' twice", {"agents": ["a", "a"]}),
        ("does not list the task's agent 'a'", {"agents": ["b", "judge"]}),
        ("uses agent 'x', which is not defined", {"agents": ["a", "x"]}),
        ("uses agent 'nobody', which is not defined", {"count": 2, "judge": {"agent": "nobody"}}),
        (
            "judge criterion 'same' is used 2 times",
            {"count": 2, "judge": {"criteria": [{"name": "same", "weight": 1}] * 2}},
        ),
        (
            "every judge criterion weighs 0",
            {"count": 2, "judge": {"criteria": [{"name": "x", "weight": 0}]}},
        ),
    ],
)
def test_static_checks_of_candidates(problem: str, kwargs: dict[str, Any]) -> None:
    assert any(problem in line for line in checked(**kwargs)), checked(**kwargs)


def test_names_must_leave_room_for_the_longest_unit_key() -> None:
    assert checked("n" * 50, count=10) == []  # n…n.candidate-10 is 63 characters
    [problem] = checked("n" * 51, count=10)
    assert problem.endswith("shorten the task name to 50 characters")
    assert checked("n" * 51, count=9) == []


def test_candidates_and_for_each_do_not_mix() -> None:
    spec = workflow(
        {
            "name": "list",
            "outputSchema": {"type": "object", "properties": {"x": {"type": "array"}}},
        },
        {
            "name": "t",
            "deps": ["list"],
            "forEach": {"from": "tasks.list.json.x"},
            "candidates": {"count": 2, "judge": {"agent": "agent", "criteria": CRITERIA}},
        },
    )
    assert any("forEach or candidates, not both" in line for line in check_workflow("wf", spec))
