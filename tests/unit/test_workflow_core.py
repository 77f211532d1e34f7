"""The reconcile core's rules, each driven through a small simulated cluster."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from troupe_operator.api import (
    AgentSpec,
    ConditionStatus,
    ModelCalls,
    TaskPhase,
    TaskReport,
    TaskResult,
    TokenUsage,
    WorkflowPhase,
    WorkflowSpec,
    WorkflowStatus,
)
from troupe_operator.workflow import (
    AgentProfile,
    CreateTask,
    Decision,
    DeleteJob,
    Event,
    EventType,
    InvalidSpec,
    JobRef,
    JobState,
    Observation,
    ObservedJob,
    PodProblem,
    PrepareRun,
    Refusal,
    TenantShare,
    WorkflowRef,
    reconcile,
)

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
RUN = WorkflowRef("team", "wf", "uid-1")


def workflow(*tasks: dict[str, Any], **settings: Any) -> WorkflowSpec:
    """A spec from short task dicts: {"name": ..., "deps": [...]}."""
    return WorkflowSpec.model_validate(
        {
            "inputs": {"topic": "vector databases"},
            "retryBackoffSeconds": 0,
            **settings,
            "tasks": [
                {
                    "name": task["name"],
                    **({} if "agentSelector" in task else {"agent": task.get("agent", "agent")}),
                    "prompt": task.get("prompt", f"Do {task['name']} on {{{{ inputs.topic }}}}"),
                    "dependsOn": task.get("deps", []),
                    **{
                        k: v
                        for k, v in task.items()
                        if k not in ("name", "agent", "prompt", "deps")
                    },
                }
                for task in tasks
            ],
        }
    )


SERIAL = workflow(
    {"name": "research"},
    {"name": "plan", "deps": ["research"], "prompt": "Plan from {{ tasks.research.output }}"},
    {"name": "write", "deps": ["plan"], "prompt": "Write {{ tasks.plan.output }}"},
    {"name": "review", "deps": ["write"], "prompt": "Review {{ tasks.write.output }}"},
)
FAN = workflow(
    {"name": "a"},
    {"name": "b"},
    {"name": "c"},
    {"name": "join", "deps": ["a", "b", "c"]},
)


class Cluster:
    """Plays the API server and the Job controller for the core, with a fake clock."""

    def __init__(self, spec: WorkflowSpec, agents: dict[str, AgentSpec] | None = None) -> None:
        self.spec: WorkflowSpec | InvalidSpec = spec
        self.generation = 1
        self.status = WorkflowStatus()
        self.jobs: dict[str, ObservedJob] = {}
        self.refusals: list[Refusal] = []
        self.recorded: WorkflowSpec | None = None
        self.agents = {"agent": AgentSpec()} if agents is None else agents
        self.profiles: dict[str, AgentProfile] = {}
        self.now = T0
        self.created: list[CreateTask] = []
        self.events: list[Event] = []
        self.last: Decision | None = None
        self.free_slots: int | None = None
        self.stop: str | None = None
        self.tenancy_refusal: str | None = None
        self.tenant: TenantShare | None = None
        self.stop_request: str | None = None
        self.suspended = False
        self.retry_request: str | None = None

    def observe(self) -> Observation:
        return Observation(
            namespace="team",
            name="wf",
            uid="uid-1",
            generation=self.generation,
            spec=self.spec,
            status=self.status,
            now=self.now,
            jobs=list(self.jobs.values()),
            agents=self.agents,
            agent_profiles=self.profiles,
            recorded_spec=self.recorded,
            refusals=self.refusals,
            free_slots=self.free_slots,
            stop=self.stop,
            tenancy_refusal=self.tenancy_refusal,
            tenant=self.tenant,
            stop_request=self.stop_request,
            suspended=self.suspended,
            retry_request=self.retry_request,
        )

    def step(self) -> Decision:
        decision = reconcile(self.observe())
        self.refusals = []
        for action in decision.actions:
            if isinstance(action, CreateTask) and action.job_name not in self.jobs:
                self.created.append(action)
                self.jobs[action.job_name] = ObservedJob(
                    action.job_name,
                    action.task,
                    action.attempt,
                    JobState.ACTIVE,
                    self.now,
                    agent=action.task_input.agent_name,
                )
            elif isinstance(action, DeleteJob):
                self.jobs.pop(action.name, None)
            elif isinstance(action, Event):
                self.events.append(action)
            elif isinstance(action, PrepareRun):
                self.recorded = action.spec
        self.status = decision.status
        self.last = decision
        return decision

    def running(self, task: str) -> ObservedJob:
        return next(
            job for job in self.jobs.values() if job.task == task and job.state == JobState.ACTIVE
        )

    def succeed(
        self,
        task: str,
        preview: str | None = None,
        tokens: int = 10,
        fields: dict[str, Any] | None = None,
        counts: dict[str, int] | None = None,
    ) -> None:
        job = self.running(task)
        text = preview or f"output of {task}"
        report = TaskReport(
            succeeded=True,
            result=result(tokens, len(text)),
            preview=text,
            fields=fields,
            counts=counts,
        )
        self.jobs[job.name] = replace(
            job, state=JobState.SUCCEEDED, finished_at=self.now, report=report
        )

    def fail(
        self, task: str, message: str = "model unreachable", tokens: int = 0, **flags: bool
    ) -> None:
        job = self.running(task)
        spent = result(tokens, 0).model_copy(update={"calls": 0, "failed_calls": {"429": 2}})
        report = TaskReport(succeeded=False, message=message, result=spent)
        self.jobs[job.name] = replace(
            job, state=JobState.FAILED, finished_at=self.now, report=report, **flags
        )

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def task(self, name: str) -> Any:
        return self.status.tasks[name]

    def events_of(self, reason: str) -> list[Event]:
        return [event for event in self.events if event.reason == reason]

    def condition(self, type_: str) -> Any:
        return next(c for c in self.status.conditions if c.type == type_)


def result(tokens: int, size: int) -> TaskResult:
    usage = TokenUsage(input_tokens=tokens, output_tokens=tokens, total_tokens=2 * tokens)
    return TaskResult(model="test-model", usage=usage, calls=1, bytes=size)


def created_tasks(decision: Decision) -> list[tuple[str, int]]:
    return [(action.task, action.attempt) for action in decision.of_type(CreateTask)]


def test_a_serial_run_starts_each_task_after_its_dependency_succeeded() -> None:
    cluster = Cluster(SERIAL)
    first = cluster.step()
    assert created_tasks(first) == [("research", 1)]
    assert isinstance(first.actions[0], PrepareRun)
    assert cluster.status.phase == WorkflowPhase.RUNNING
    assert cluster.status.started_at == T0
    assert cluster.status.progress == "0/4"
    assert cluster.task("research").job == RUN.job_name("research", 1)
    assert [event.reason for event in first.of_type(Event)] == ["TaskStarted"]
    assert all(event.routine for event in first.of_type(Event))

    cluster.advance(5)
    cluster.succeed("research", "FACTS")
    second = cluster.step()
    assert created_tasks(second) == [("plan", 1)]
    plan = second.of_type(CreateTask)[0]
    assert plan.task_input.upstream == {"research": RUN.output_config_map("research")}
    assert "FACTS" not in plan.task_input.model_dump_json(), "task data reached the operator"
    assert plan.spec_config_map == RUN.spec_config_map()
    assert plan.service_account == RUN.task_identity()
    assert cluster.task("research").phase == TaskPhase.SUCCEEDED
    assert cluster.status.progress == "1/4"


def test_a_task_reads_every_output_its_prompt_names_not_only_its_dependencies() -> None:
    cluster = Cluster(
        workflow(
            {"name": "a"},
            {"name": "b", "deps": ["a"]},
            {"name": "c", "deps": ["b"], "prompt": "{{ tasks.a.output }} and the rest"},
        )
    )
    for task in ("a", "b"):
        cluster.step()
        cluster.succeed(task)
    upstream = cluster.step().of_type(CreateTask)[0].task_input.upstream
    assert upstream == {name: RUN.output_config_map(name) for name in ("a", "b")}


def test_preparing_a_run_grants_its_pods_exactly_its_own_outputs() -> None:
    prepare = Cluster(FAN).step().of_type(PrepareRun)[0]
    assert prepare.spec == FAN
    assert prepare.service_account == RUN.task_identity()
    assert set(prepare.outputs) == {RUN.output_config_map(t) for t in ("a", "b", "c", "join")}


def test_a_finished_run_has_progress_usage_previews_and_conditions() -> None:
    cluster = Cluster(SERIAL)
    for task in ("research", "plan", "write", "review"):
        cluster.step()
        cluster.advance(20)
        cluster.succeed(task, "x" * 200, tokens=5)
    cluster.step()
    status = cluster.status
    assert status.phase == WorkflowPhase.SUCCEEDED
    assert status.progress == "4/4"
    assert status.finished_at == T0 + timedelta(seconds=80)
    assert status.duration == "1m20s"
    assert status.usage == TokenUsage(input_tokens=20, output_tokens=20, total_tokens=40)
    review = cluster.task("review")
    assert review.usage.total_tokens == 10
    assert review.preview is not None and len(review.preview) == 200
    assert review.output.config_map == RUN.output_config_map("review")
    assert review.output.bytes == 200
    assert review.model == "test-model"
    assert cluster.condition("Succeeded").status == ConditionStatus.TRUE
    assert cluster.condition("Failed").status == ConditionStatus.FALSE
    assert cluster.condition("Ready").status == ConditionStatus.TRUE
    assert cluster.condition("Succeeded").observed_generation == 1
    assert len(cluster.events_of("WorkflowSucceeded")) == 1
    assert len(cluster.events_of("TaskSucceeded")) == 4
    task_events = [e for e in cluster.events if e.reason.startswith("Task") and not e.routine]
    assert len(task_events) == 4, "more than one Event per task by default"


def test_condition_transition_times_move_only_when_the_status_flips() -> None:
    cluster = Cluster(SERIAL)
    cluster.step()
    failed_since = cluster.condition("Failed").last_transition_time
    cluster.advance(30)
    cluster.succeed("research")
    cluster.step()
    assert cluster.condition("Failed").last_transition_time == failed_since
    assert cluster.condition("Ready").last_transition_time == T0


def test_the_same_observation_never_creates_an_attempt_twice() -> None:
    cluster = Cluster(FAN)
    stale = cluster.observe()
    first = cluster.step()
    assert created_tasks(first) == [("a", 1), ("b", 1), ("c", 1)]
    again = reconcile(replace(stale, jobs=list(cluster.jobs.values())))
    assert again.of_type(CreateTask) == []
    assert reconcile(cluster.observe()).of_type(CreateTask) == []


def test_status_is_the_record_whatever_the_jobs_show_after_a_restart() -> None:
    """Reproduced: a restarted operator with no Jobs known yet failed healthy runs."""
    cluster = Cluster(SERIAL)
    cluster.step()
    cluster.succeed("research")
    cluster.step()
    cluster.jobs.clear()  # a new operator: nothing observed yet, or Jobs deleted after finishing
    decision = cluster.step()
    assert decision.of_type(CreateTask) == [] and decision.of_type(DeleteJob) == []
    assert cluster.task("research").phase == TaskPhase.SUCCEEDED
    assert cluster.task("plan").phase == TaskPhase.RUNNING
    assert decision.unobserved_jobs == (JobRef(RUN.job_name("plan", 1), "plan", 1),)
    assert cluster.status.phase == WorkflowPhase.RUNNING


def test_a_job_confirmed_gone_before_it_finished_is_a_failed_attempt() -> None:
    cluster = Cluster(workflow({"name": "a", "retries": 1}))
    cluster.step()
    job = cluster.running("a")
    cluster.jobs[job.name] = replace(job, state=JobState.GONE)
    assert created_tasks(cluster.step()) == [("a", 2)]
    assert "deleted before it finished" in cluster.task("a").message


def test_a_downstream_task_starts_from_status_when_upstream_jobs_are_gone() -> None:
    """Reproduced: a TTL-deleted upstream Job made its downstream fail for good."""
    cluster = Cluster(SERIAL)
    cluster.step()
    cluster.succeed("research")
    cluster.step()
    cluster.succeed("plan")
    del cluster.jobs[RUN.job_name("research", 1)]
    assert created_tasks(cluster.step()) == [("write", 1)]


def test_a_failed_attempt_is_retried_with_exponential_backoff() -> None:
    cluster = Cluster(workflow({"name": "flaky", "retries": 3}, retryBackoffSeconds=10))
    cluster.step()
    cluster.advance(3)
    cluster.fail("flaky", "HTTP 503 from the model")
    decision = cluster.step()
    assert created_tasks(decision) == []
    assert decision.requeue_after == 10
    assert cluster.task("flaky").phase == TaskPhase.RETRYING
    assert "attempt 1 failed: HTTP 503" in cluster.task("flaky").message
    assert "attempt 2 of 4 in 10s" in cluster.events_of("RetryScheduled")[0].message

    cluster.advance(9)
    assert created_tasks(cluster.step()) == []
    assert len(cluster.events_of("RetryScheduled")) == 1
    cluster.advance(1)
    assert created_tasks(cluster.step()) == [("flaky", 2)]
    assert cluster.task("flaky").phase == TaskPhase.RUNNING

    cluster.fail("flaky")
    assert cluster.step().requeue_after == 20
    cluster.advance(20)
    assert created_tasks(cluster.step()) == [("flaky", 3)]


def test_backoff_doubles_and_is_capped_at_ten_minutes() -> None:
    from troupe_operator.workflow.timing import backoff_seconds

    assert [backoff_seconds(10, attempt) for attempt in (1, 2, 3, 4, 5)] == [0, 10, 20, 40, 80]
    assert backoff_seconds(100, 10) == 600
    assert backoff_seconds(0, 5) == 0


def test_retries_run_out_and_the_task_fails_with_the_reason() -> None:
    cluster = Cluster(workflow({"name": "only", "retries": 1}))
    cluster.step()
    cluster.fail("only", "first")
    assert created_tasks(cluster.step()) == [("only", 2)]
    cluster.fail("only", "quota exhausted")
    decision = cluster.step()
    assert created_tasks(decision) == []
    assert cluster.task("only").phase == TaskPhase.FAILED
    assert cluster.status.phase == WorkflowPhase.FAILED
    assert "attempt 2 failed: quota exhausted" in cluster.status.message
    assert cluster.condition("Failed").status == ConditionStatus.TRUE
    assert cluster.condition("Failed").reason == "TaskFailed"
    assert decision.requeue_after is None
    assert [e.reason for e in decision.of_type(Event)] == ["TaskFailed", "WorkflowFailed"]


def test_a_permanent_failure_is_never_retried() -> None:
    cluster = Cluster(workflow({"name": "only", "retries": 5}))
    cluster.step()
    cluster.fail("only", "invalid API key", permanent=True)
    assert created_tasks(cluster.step()) == []
    assert cluster.task("only").phase == TaskPhase.FAILED
    assert cluster.task("only").attempts == 1
    assert "permanent, not retried" in cluster.task("only").message


def test_a_task_past_its_deadline_counts_as_a_failed_attempt() -> None:
    cluster = Cluster(workflow({"name": "slow", "timeoutSeconds": 30, "retries": 1}))
    first = cluster.step()
    assert first.of_type(CreateTask)[0].active_deadline_seconds == 30
    assert first.of_type(CreateTask)[0].task_input.deadline_seconds == 27
    cluster.fail("slow", "DeadlineExceeded", deadline_exceeded=True)
    assert created_tasks(cluster.step()) == [("slow", 2)]
    assert "timed out after 30s" in cluster.task("slow").message


def test_a_job_that_succeeded_without_a_report_succeeds_and_says_what_is_unknown() -> None:
    cluster = Cluster(workflow({"name": "only"}))
    cluster.step()
    job = cluster.running("only")
    cluster.jobs[job.name] = replace(job, state=JobState.SUCCEEDED, finished_at=cluster.now)
    cluster.step()
    task = cluster.task("only")
    assert task.phase == TaskPhase.SUCCEEDED and task.usage is None and task.preview is None
    assert task.output.config_map == RUN.output_config_map("only") and task.output.bytes is None
    assert "no report" in task.message


def test_tokens_and_calls_of_failed_attempts_count_toward_the_task() -> None:
    cluster = Cluster(workflow({"name": "a", "retries": 1}))
    cluster.step()
    cluster.fail("a", "output write refused", tokens=7)
    cluster.step()
    cluster.step()
    cluster.succeed("a", tokens=5)
    cluster.step()
    assert cluster.task("a").usage == TokenUsage(input_tokens=12, output_tokens=12, total_tokens=24)
    assert cluster.task("a").calls == ModelCalls(total=3, failed={"429": 2})


@pytest.mark.parametrize(
    ("reason", "message", "permanent"),
    [
        ("CreateContainerConfigError", 'secret "openai" not found', True),
        ("InvalidImageName", 'invalid image name "UPPER"', True),
        ("ErrImagePull", 'failed to pull "registry/agent:1"', False),
        ("ImagePullBackOff", 'Back-off pulling image "registry/agent:1"', False),
    ],
)
def test_a_pod_that_cannot_start_ends_its_attempt_with_the_reason(
    reason: str, message: str, permanent: bool
) -> None:
    cluster = Cluster(workflow({"name": "a", "retries": 1}))
    cluster.step()
    job = cluster.running("a")
    cluster.jobs[job.name] = replace(job, problem=PodProblem(reason, message))
    decision = cluster.step()
    assert [a.name for a in decision.of_type(DeleteJob)] == [job.name]
    task = cluster.task("a")
    assert message in task.message and reason in task.message
    assert task.phase == (TaskPhase.FAILED if permanent else TaskPhase.RUNNING)
    assert created_tasks(decision) == ([] if permanent else [("a", 2)])


def test_an_unschedulable_pod_ends_its_attempt_after_the_limit() -> None:
    cluster = Cluster(workflow({"name": "a"}))
    cluster.step()
    job = cluster.running("a")
    problem = PodProblem("Unschedulable", "0/1 nodes are available: 1 Insufficient cpu.", T0)
    cluster.jobs[job.name] = replace(job, problem=problem)
    cluster.advance(60)
    decision = cluster.step()
    assert decision.of_type(DeleteJob) == [] and decision.requeue_after == 240
    cluster.advance(240)
    decision = cluster.step()
    assert [a.name for a in decision.of_type(DeleteJob)] == [job.name]
    assert "unschedulable for more than 300s" in cluster.task("a").message


def test_a_job_refused_by_the_api_server_fails_its_task_with_the_servers_words() -> None:
    cluster = Cluster(workflow({"name": "a", "retries": 3}, {"name": "b"}))
    decision = reconcile(cluster.observe())
    refused = next(a for a in decision.of_type(CreateTask) if a.task == "a")
    cluster.refusals = [Refusal(refused, 'jobs "x" is forbidden: exceeded quota: compute')]
    decision = cluster.step()
    assert created_tasks(decision) == [("b", 1)]
    task = cluster.task("a")
    assert task.phase == TaskPhase.FAILED and "exceeded quota" in task.message
    assert [e.reason for e in decision.of_type(Event) if not e.routine] == ["TaskFailed"]


def test_a_refused_start_fails_the_run_with_a_condition() -> None:
    cluster = Cluster(SERIAL)
    prepare = reconcile(cluster.observe()).of_type(PrepareRun)[0]
    cluster.refusals = [Refusal(prepare, "ConfigMap is 1300000 bytes: Too long")]
    decision = cluster.step()
    assert decision.of_type(CreateTask) == []
    assert cluster.status.phase == WorkflowPhase.FAILED
    assert cluster.condition("Failed").reason == "StartRefused"
    assert "Too long" in cluster.status.message
    assert [e.reason for e in decision.of_type(Event)] == ["WorkflowFailed"]


def test_the_workflow_timeout_stops_running_jobs_and_fails_the_run() -> None:
    cluster = Cluster(
        workflow({"name": "a"}, {"name": "b", "deps": ["a"]}, {"name": "c"}, timeoutSeconds=60)
    )
    assert cluster.step().requeue_after == 60
    cluster.advance(10)
    cluster.succeed("c")
    assert cluster.step().requeue_after == 50
    cluster.advance(50)
    decision = cluster.step()
    assert [a.name for a in decision.of_type(DeleteJob)] == [RUN.job_name("a", 1)]
    assert cluster.status.phase == WorkflowPhase.FAILED
    assert cluster.condition("Failed").reason == "Timeout"
    assert "timed out after 1m00s" in cluster.status.message
    assert cluster.task("a").phase == TaskPhase.CANCELLED
    assert cluster.task("b").phase == TaskPhase.SKIPPED
    assert cluster.task("c").phase == TaskPhase.SUCCEEDED
    assert decision.requeue_after is None


def test_fail_fast_cancels_running_siblings_and_starts_nothing_more() -> None:
    cluster = Cluster(
        workflow({"name": "a"}, {"name": "b"}, {"name": "c", "deps": ["a"]}, failFast=True)
    )
    cluster.step()
    cluster.fail("b", "bad request", permanent=True)
    decision = cluster.step()
    assert [a.name for a in decision.of_type(DeleteJob)] == [RUN.job_name("a", 1)]
    assert created_tasks(decision) == []
    assert cluster.task("a").phase == TaskPhase.CANCELLED
    assert cluster.task("c").phase == TaskPhase.SKIPPED
    assert cluster.status.phase == WorkflowPhase.FAILED
    assert "failFast" in cluster.status.message


def test_without_fail_fast_independent_branches_run_on() -> None:
    cluster = Cluster(
        workflow({"name": "a"}, {"name": "b"}, {"name": "c", "deps": ["b"]}, {"name": "d"})
    )
    cluster.step()
    cluster.fail("b")
    decision = cluster.step()
    assert decision.of_type(DeleteJob) == []
    assert cluster.task("c").phase == TaskPhase.SKIPPED
    assert "upstream task 'b' failed" in cluster.task("c").message
    assert cluster.status.phase == WorkflowPhase.RUNNING
    cluster.succeed("a")
    cluster.succeed("d")
    cluster.step()
    assert cluster.status.phase == WorkflowPhase.FAILED
    assert cluster.status.progress == "2/4"


def test_parallelism_caps_running_jobs_including_unknown_ones() -> None:
    cluster = Cluster(workflow(*({"name": f"t{i}"} for i in range(5)), parallelism=2))
    assert len(cluster.step().of_type(CreateTask)) == 2
    assert cluster.step().of_type(CreateTask) == []
    cluster.succeed("t0")
    assert len(cluster.step().of_type(CreateTask)) == 1

    fresh = Cluster(workflow(*({"name": f"t{i}"} for i in range(5)), parallelism=2))
    name = RUN.job_name("t4", 1)
    fresh.jobs[name] = ObservedJob(name, "t4", 1, JobState.ACTIVE, T0)
    assert created_tasks(fresh.step()) == [("t0", 1)]
    assert fresh.task("t4").phase == TaskPhase.RUNNING


def test_parallelism_counts_tasks_status_says_run_even_when_their_jobs_are_unseen() -> None:
    """Reproduced: after a restart with the Job list delayed, two Jobs ran at parallelism 1."""
    cluster = Cluster(workflow(*({"name": f"t{i}"} for i in range(3)), parallelism=1))
    cluster.step()
    cluster.jobs.clear()
    decision = cluster.step()
    assert decision.of_type(CreateTask) == []
    assert decision.unobserved_jobs == (JobRef(RUN.job_name("t0", 1), "t0", 1),)


def test_the_shells_free_slots_bound_new_attempts_and_the_specs_parallelism_still_holds() -> None:
    cluster = Cluster(workflow(*({"name": f"t{i}"} for i in range(6)), parallelism=3))
    for free, started in [(2, 2), (0, 0), (5, 1)]:
        cluster.free_slots = free
        assert len(cluster.step().of_type(CreateTask)) == started
    assert cluster.status.message == "3 pending, 3 running"


def test_a_stop_from_the_shell_cancels_what_runs_and_keeps_what_succeeded() -> None:
    cluster = Cluster(workflow({"name": "a"}, {"name": "b"}, {"name": "c", "deps": ["a"]}))
    cluster.step()
    cluster.succeed("b")
    cluster.stop = "interrupted by SIGTERM"
    decision = cluster.step()
    assert [a.name for a in decision.of_type(DeleteJob)] == [RUN.job_name("a", 1)]
    assert created_tasks(decision) == []
    assert (cluster.status.phase, cluster.status.message) == (
        WorkflowPhase.FAILED,
        "interrupted by SIGTERM",
    )
    assert cluster.condition("Failed").reason == "Interrupted"
    assert cluster.task("a").message == "cancelled: interrupted by SIGTERM"
    phases = [cluster.task(name).phase for name in "abc"]
    assert phases == [TaskPhase.CANCELLED, TaskPhase.SUCCEEDED, TaskPhase.SKIPPED]
    assert decision.requeue_after is None


def test_a_spec_the_models_refuse_is_an_error_decided_by_the_core() -> None:
    cluster = Cluster(SERIAL)
    cluster.spec = InvalidSpec(["tasks.0.retries: Input should be a valid integer"])
    decision = cluster.step()
    assert cluster.status.phase == WorkflowPhase.ERROR
    assert "retries: Input should be a valid integer" in cluster.status.message
    assert [e.reason for e in decision.of_type(Event)] == ["InvalidSpec"]
    assert cluster.step().actions == []


def test_an_invalid_spec_is_an_error_with_one_warning_and_no_actions() -> None:
    spec = workflow({"name": "a", "prompt": "{{ inputs.missing }}"})
    cluster = Cluster(spec)
    decision = cluster.step()
    assert [type(a) for a in decision.actions] == [Event]
    assert cluster.status.phase == WorkflowPhase.ERROR
    assert "unknown input 'missing'" in cluster.status.message
    assert cluster.condition("Failed").reason == "InvalidSpec"
    assert decision.requeue_after is None
    assert cluster.step().actions == []

    cluster.spec = workflow({"name": "a"})
    cluster.generation = 2
    assert created_tasks(cluster.step()) == [("a", 1)]
    assert cluster.status.phase == WorkflowPhase.RUNNING


def test_a_missing_agent_keeps_the_run_pending_until_it_appears() -> None:
    cluster = Cluster(SERIAL, agents={})
    decision = cluster.step()
    assert decision.of_type(CreateTask) == []
    assert decision.waiting_for_agents == {"agent"}
    assert cluster.status.phase == WorkflowPhase.PENDING
    assert cluster.condition("Ready").reason == "AgentNotFound"
    assert "'agent'" in cluster.status.message
    cluster.step()
    assert len(cluster.events_of("AgentNotFound")) == 1

    cluster.agents = {"agent": AgentSpec()}
    assert created_tasks(cluster.step()) == [("research", 1)]
    assert cluster.condition("Ready").status == ConditionStatus.TRUE


NOT_TENANTED = "namespace team is not owned by any Tenant"


def test_a_run_in_an_untenanted_namespace_waits_refused_until_its_namespace_is_adopted() -> None:
    cluster = Cluster(SERIAL)
    cluster.tenancy_refusal = NOT_TENANTED
    decision = cluster.step()
    assert decision.actions == [Event(EventType.WARNING, "NamespaceNotTenanted", NOT_TENANTED)]
    assert cluster.status.phase == WorkflowPhase.PENDING
    assert cluster.status.message == NOT_TENANTED
    admitted = cluster.condition("Admitted")
    assert (admitted.status, admitted.reason) == (ConditionStatus.FALSE, "NamespaceNotTenanted")
    assert cluster.condition("Ready").reason == "NamespaceNotTenanted"
    assert cluster.step().requeue_after is None  # the shell's resync and namespace events wake it
    assert len(cluster.events_of("NamespaceNotTenanted")) == 1

    cluster.tenancy_refusal = None
    assert created_tasks(cluster.step()) == [("research", 1)]
    assert cluster.condition("Admitted").status == ConditionStatus.TRUE
    assert cluster.condition("Ready").status == ConditionStatus.TRUE


def test_a_run_under_way_goes_on_when_its_namespace_loses_its_tenant() -> None:
    cluster = Cluster(SERIAL)
    cluster.step()
    cluster.tenancy_refusal = NOT_TENANTED
    cluster.succeed("research")
    assert created_tasks(cluster.step()) == [("plan", 1)]
    assert cluster.status.phase == WorkflowPhase.RUNNING
    assert cluster.events_of("NamespaceNotTenanted") == []


def test_the_tenants_free_slots_hold_ready_tasks_back_with_a_reason_and_no_event() -> None:
    cluster = Cluster(workflow(*({"name": f"t{i}"} for i in range(5)), parallelism=3))
    share = TenantShare("team-a", free_slots=1, max_concurrent_tasks=2)
    cluster.tenant = share
    decision = cluster.step()
    assert created_tasks(decision) == [("t0", 1)]
    assert (decision.held_by, decision.held_back) == ("TenantConcurrencyLimit", 2)
    assert cluster.condition("Ready").reason == "TenantConcurrencyLimit"
    assert cluster.status.message == (
        "ready tasks wait for a slot: Tenant team-a runs at most 2 tasks at once across its "
        "Workflows (limits.maxConcurrentTasks)"
    )
    assert not [e for e in decision.of_type(Event) if e.type == EventType.WARNING]

    cluster.tenant = replace(share, free_slots=5)
    decision = cluster.step()
    assert created_tasks(decision) == [("t1", 1), ("t2", 1)]  # parallelism still holds
    assert (decision.held_by, cluster.condition("Ready").reason) == (None, "Running")


def test_a_spent_token_budget_lets_running_tasks_finish_and_starts_nothing_new() -> None:
    cluster = Cluster(workflow({"name": "a"}, {"name": "b"}, {"name": "c", "deps": ["a"]}))
    cluster.tenant = TenantShare("team-a", token_budget=100, tokens_elsewhere=70)
    assert created_tasks(cluster.step()) == [("a", 1), ("b", 1)]
    cluster.succeed("a", tokens=20)  # 70 + 40 >= 100: spent, while b still runs
    decision = cluster.step()
    assert created_tasks(decision) == [] and decision.of_type(DeleteJob) == []
    assert (decision.held_by, decision.held_back) == ("TokenBudgetExceeded", 1)
    assert cluster.task("b").phase == TaskPhase.RUNNING
    ready = cluster.condition("Ready")
    assert (ready.status, ready.reason) == (ConditionStatus.FALSE, "TokenBudgetExceeded")
    assert ready.message == (
        "1 ready task(s) wait: Tenant team-a has used 110 of its 100 tokens "
        "(limits.tokenBudget); raising the budget lets them start"
    )
    cluster.succeed("b")
    cluster.step()
    assert len(cluster.events_of("TokenBudgetExceeded")) == 1

    cluster.tenant = TenantShare("team-a", token_budget=1000, tokens_elsewhere=70)
    assert created_tasks(cluster.step()) == [("c", 1)]
    assert cluster.condition("Ready").status == ConditionStatus.TRUE


def test_a_spec_change_while_running_is_refused_and_the_run_goes_on() -> None:
    cluster = Cluster(SERIAL)
    cluster.step()
    cluster.spec = workflow({"name": "other"})
    cluster.generation = 2
    cluster.succeed("research")
    decision = cluster.step()
    assert created_tasks(decision) == [("plan", 1)]
    assert cluster.condition("SpecChangeRefused").status == ConditionStatus.TRUE
    assert len(cluster.events_of("SpecChangeRefused")) == 1
    cluster.step()
    assert len(cluster.events_of("SpecChangeRefused")) == 1
    assert set(cluster.status.tasks) == {"research", "plan", "write", "review"}

    cluster.spec = SERIAL
    cluster.step()
    assert not [c for c in cluster.status.conditions if c.type == "SpecChangeRefused"]


def test_a_run_is_bound_to_its_recorded_spec_before_its_status_says_so() -> None:
    cluster = Cluster(SERIAL)
    reconcile(cluster.observe())  # prepared and started; its status write failed
    cluster.recorded = SERIAL
    cluster.spec = workflow({"name": "other"})
    cluster.generation = 2
    decision = cluster.step()
    assert created_tasks(decision) == [("research", 1)]
    assert cluster.condition("SpecChangeRefused").status == ConditionStatus.TRUE


def test_a_spec_change_without_the_recorded_spec_stops_the_run() -> None:
    cluster = Cluster(SERIAL)
    cluster.step()
    cluster.spec = workflow({"name": "other"})
    cluster.recorded = None
    decision = cluster.step()
    assert [a.name for a in decision.of_type(DeleteJob)] == [RUN.job_name("research", 1)]
    assert cluster.status.phase == WorkflowPhase.FAILED
    assert cluster.task("research").phase == TaskPhase.CANCELLED


def test_a_finished_run_only_stops_leftover_jobs() -> None:
    cluster = Cluster(workflow({"name": "a"}, {"name": "b"}, failFast=True))
    cluster.step()
    cluster.fail("a")
    cluster.step()
    name = RUN.job_name("b", 1)
    cluster.jobs[name] = ObservedJob(name, "b", 1, JobState.ACTIVE, T0)
    decision = cluster.step()
    assert [type(a) for a in decision.actions] == [DeleteJob]
    assert cluster.step().actions == []


def test_the_api_key_variable_is_named_only_for_agents_with_a_secret() -> None:
    keyed = AgentSpec.model_validate(
        {"model": {"baseURL": "http://llm/v1", "apiKeySecretRef": {"name": "openai"}}}
    )
    cluster = Cluster(
        workflow({"name": "a", "agent": "keyed"}, {"name": "b"}),
        agents={"keyed": keyed, "agent": AgentSpec()},
    )
    inputs = {a.task: a.task_input for a in cluster.step().of_type(CreateTask)}
    assert inputs["a"].api_key_env == "TROUPE_API_KEY"
    assert inputs["b"].api_key_env is None
    assert inputs["a"].output.config_map == RUN.output_config_map("a")
    [owner] = inputs["a"].output.owner_references
    assert owner["uid"] == "uid-1" and "blockOwnerDeletion" not in owner


@pytest.mark.parametrize("phase", [TaskPhase.FAILED, TaskPhase.SKIPPED])
def test_tasks_below_a_task_that_did_not_succeed_are_skipped(phase: TaskPhase) -> None:
    cluster = Cluster(
        workflow({"name": "a"}, {"name": "b", "deps": ["a"]}, {"name": "c", "deps": ["b"]})
    )
    cluster.step()
    cluster.fail("a")
    cluster.step()
    assert cluster.task("b").phase == TaskPhase.SKIPPED
    assert cluster.task("c").phase == phase.SKIPPED
    assert cluster.status.phase == WorkflowPhase.FAILED


# Property tests: random DAGs, random outcomes, the rules must hold throughout.

Outcome = str  # "ok", "fail", "permanent", "deadline"
OUTCOMES = st.sampled_from(["ok", "ok", "ok", "fail", "permanent", "deadline"])


@st.composite
def random_runs(draw: st.DrawFn) -> tuple[WorkflowSpec, dict[tuple[str, int], Outcome], int]:
    count = draw(st.integers(1, 7))
    names = [f"t{i}" for i in range(count)]
    tasks = []
    for index, name in enumerate(names):
        deps = draw(st.lists(st.sampled_from(names[:index]), unique=True)) if index else []
        tasks.append({"name": name, "deps": deps, "retries": draw(st.integers(0, 2))})
    spec = workflow(
        *tasks,
        parallelism=draw(st.none() | st.integers(1, 3)),
        failFast=draw(st.booleans()),
        retryBackoffSeconds=draw(st.integers(0, 5)),
    )
    outcomes = {(name, attempt): draw(OUTCOMES) for name in names for attempt in range(1, 4)}
    return spec, outcomes, draw(st.integers(0, 2**16))


def check_step(cluster: Cluster, decision: Decision) -> None:
    """The invariants of one decision, checked before the cluster applies it."""
    deps = {task.name: task.depends_on for task in cluster.spec.tasks}
    for action in decision.of_type(CreateTask):
        assert action.job_name not in cluster.jobs, f"{action.job_name} created twice"
        for dependency in deps[action.task]:
            assert any(
                job.task == dependency and job.state == JobState.SUCCEEDED
                for job in cluster.jobs.values()
            ), f"{action.task} started before {dependency} succeeded"


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_runs())
def test_random_dags_respect_dependencies_parallelism_and_terminate(
    run: tuple[WorkflowSpec, dict[tuple[str, int], Outcome], int],
) -> None:
    spec, outcomes, seed = run
    chooser = random.Random(seed)
    cluster = Cluster(spec)
    for _ in range(200):
        decision = reconcile(cluster.observe())
        check_step(cluster, decision)
        cluster.step()
        active = [job for job in cluster.jobs.values() if job.state == JobState.ACTIVE]
        if spec.parallelism is not None:
            assert len(active) <= spec.parallelism
        if cluster.status.phase in (WorkflowPhase.SUCCEEDED, WorkflowPhase.FAILED):
            break
        for job in active:
            if chooser.random() < 0.6:
                outcome = outcomes[(job.task, job.attempt)]
                if outcome == "ok":
                    cluster.succeed(job.task)
                else:
                    cluster.fail(
                        job.task,
                        permanent=outcome == "permanent",
                        deadline_exceeded=outcome == "deadline",
                    )
        cluster.advance(decision.requeue_after or 1)
    phase = cluster.status.phase
    assert phase in (WorkflowPhase.SUCCEEDED, WorkflowPhase.FAILED), "run did not finish"
    assert not [job for job in cluster.jobs.values() if job.state == JobState.ACTIVE]
    succeeded = {n for n, t in cluster.status.tasks.items() if t.phase == TaskPhase.SUCCEEDED}
    assert (phase == WorkflowPhase.SUCCEEDED) == (succeeded == {t.name for t in spec.tasks})
    assert cluster.status.progress == f"{len(succeeded)}/{len(spec.tasks)}"
