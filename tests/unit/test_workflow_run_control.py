"""Stop, suspend and retry in the core: what a person asks of a run through annotations."""

from __future__ import annotations

from tests.unit.test_workflow_core import SERIAL, Cluster, created_tasks
from troupe_operator.api import TaskPhase, WorkflowPhase
from troupe_operator.api.run_control import RunRequests, retry_patch
from troupe_operator.workflow import DeleteJob


def failed_on_write() -> Cluster:
    """SERIAL (research → plan → write → review) failed for good on its third task."""
    cluster = Cluster(SERIAL)
    for task in ("research", "plan"):
        cluster.step()
        cluster.succeed(task)
    cluster.step()
    cluster.fail("write", "the API key was refused", permanent=True)
    cluster.step()
    assert cluster.status.phase == WorkflowPhase.FAILED
    return cluster


def test_a_retry_runs_the_failed_tasks_again_and_never_the_succeeded_ones() -> None:
    cluster = failed_on_write()
    cluster.retry_request = "r1"
    assert created_tasks(cluster.step()) == [("write", 2)]
    assert cluster.status.phase == WorkflowPhase.RUNNING
    assert (cluster.status.retries, cluster.status.retry_request) == (1, "r1")
    assert [e.message for e in cluster.events_of("WorkflowRetried")] == [
        "retry 1: 2 task(s) run again, 2 succeeded kept"
    ]
    assert cluster.task("review").phase == TaskPhase.PENDING
    cluster.succeed("write")
    assert created_tasks(cluster.step()) == [("review", 1)]
    cluster.succeed("review")
    cluster.step()
    assert cluster.status.phase == WorkflowPhase.SUCCEEDED
    assert [a.task for a in cluster.created] == ["research", "plan", "write", "write", "review"]
    assert cluster.task("write").attempts == 2
    assert (
        cluster.status.usage and cluster.status.usage.total_tokens == 4 * 20
    )  # the failure spent none
    assert created_tasks(cluster.step()) == []  # the same request is answered once


def test_a_retried_task_counts_its_retries_afresh() -> None:
    spec = SERIAL.model_copy(update={"tasks": [SERIAL.tasks[0].model_copy(update={"retries": 1})]})
    cluster = Cluster(spec)
    for _ in range(2):
        cluster.step()
        cluster.fail("research")
    cluster.step()
    assert cluster.status.phase == WorkflowPhase.FAILED
    cluster.retry_request = "again"
    assert created_tasks(cluster.step()) == [("research", 3)]
    cluster.fail("research")
    assert created_tasks(cluster.step()) == [("research", 4)]  # its one retry, again
    assert "attempt 4 of 4" in cluster.events_of("RetryScheduled")[-1].message


def test_a_retry_asked_of_a_run_that_has_not_failed_is_refused_and_never_acted_on_later() -> None:
    cluster = Cluster(SERIAL)
    cluster.step()
    cluster.retry_request = "early"
    cluster.step()
    [refused] = cluster.events_of("RetryRefused")
    assert refused.message == (
        "retry refused: the run is Running; only a Failed run can be retried"
    )
    cluster.fail("research", permanent=True)
    cluster.step()
    cluster.step()
    assert cluster.status.phase == WorkflowPhase.FAILED and cluster.status.retries == 0


def test_stop_deletes_running_jobs_ends_failed_stopped_and_a_retry_finishes_the_run() -> None:
    cluster = Cluster(SERIAL)
    cluster.step()
    cluster.succeed("research")
    cluster.step()
    job = cluster.running("plan").name
    cluster.stop_request = "wrong inputs"
    decision = cluster.step()
    assert [action.name for action in decision.of_type(DeleteJob)] == [job]
    assert cluster.status.phase == WorkflowPhase.FAILED
    assert cluster.condition("Ready").reason == "Stopped"
    assert cluster.status.message == "stopped: wrong inputs"
    assert cluster.task("plan").phase == TaskPhase.CANCELLED
    assert cluster.task("write").phase == TaskPhase.SKIPPED
    assert created_tasks(cluster.step()) == []
    cluster.stop_request, cluster.retry_request = None, "go"  # what retry_patch writes
    assert created_tasks(cluster.step()) == [("plan", 2)]
    for task in ("plan", "write", "review"):
        cluster.succeed(task)
        cluster.step()
    assert cluster.status.phase == WorkflowPhase.SUCCEEDED


def test_a_suspended_run_starts_nothing_new_lets_running_tasks_finish_and_resumes() -> None:
    cluster = Cluster(SERIAL)
    cluster.step()
    cluster.suspended = True
    cluster.step()
    assert cluster.condition("Ready").reason == "Suspended"
    cluster.succeed("research")
    decision = cluster.step()
    assert created_tasks(decision) == []
    assert decision.waiting == {"plan": "Suspended"}
    assert cluster.task("research").phase == TaskPhase.SUCCEEDED
    assert len(cluster.events_of("Suspended")) == 1
    cluster.suspended = False
    assert created_tasks(cluster.step()) == [("plan", 1)]
    assert [e.message for e in cluster.events_of("Resumed")] == ["resumed: tasks start again"]


def test_annotations_read_as_requests_and_the_retry_patch_lifts_a_stop() -> None:
    assert RunRequests.of(None) == RunRequests()
    requests = RunRequests.of(
        {"troupe.dev/stop": " ", "troupe.dev/suspend": "true", "troupe.dev/retry": "n" * 300}
    )
    assert requests == RunRequests(stop="stopped by request", suspended=True, retry="n" * 127 + "…")
    assert not RunRequests.of({"troupe.dev/suspend": "yes"}).suspended
    assert retry_patch("n1") == {
        "metadata": {"annotations": {"troupe.dev/retry": "n1", "troupe.dev/stop": None}}
    }
