"""The operator under faults: every run still succeeds, nothing runs twice, nothing is lost.

Each test runs Workflows of eight tasks (a diamond beside a four-task chain)
to the end with the real operator, Job runner, agent runtime and OpenAI
stub, while the emulator misbehaves the way a real API server does on a bad
day (errors, 429s, hangs, cut watches, a lost or an ERROR watch event) or
the operator is killed and started again. Afterwards: every run Succeeded,
each task had exactly one Job, one attempt and one model request, and every
output is where it should be.
"""

from __future__ import annotations

import pathlib
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import kubernetes
import pytest
from prometheus_client import REGISTRY

from tests.integration.troupe_driver import TASK_MARK, Troupe, agent, workflow
from tests.support.emulator import EmulatedCluster
from tests.support.kube.faults import Target
from tests.support.openai_stub import Fault, OpenAIStub
from tests.support.waiting import wait_for

RUN_MARK = re.compile(r"RUN=([a-z0-9-]+)")
OPERATOR = Target("troupe-operator")
KOPF = Target("kopf")
ENDED = ("Succeeded", "Failed")


def eight_tasks() -> list[dict[str, Any]]:
    """A diamond (top, left, right, bottom) beside a chain (c1 .. c4)."""
    shape = {
        "top": [],
        "left": ["top"],
        "right": ["top"],
        "bottom": ["left", "right"],
        "c1": [],
        "c2": ["c1"],
        "c3": ["c2"],
        "c4": ["c3"],
    }
    return [
        {
            "name": name,
            "dependsOn": deps,
            "prompt": f"RUN={{{{ inputs.run }}}} TASK={name} "
            + " ".join(f"{{{{ tasks.{dep}.output }}}}" for dep in deps),
        }
        for name, deps in shape.items()
    ]


TASKS = [task["name"] for task in eight_tasks()]


def runs(*names: str, **spec: Any) -> list[dict[str, Any]]:
    return [workflow(name, eight_tasks(), inputs={"run": name}, **spec) for name in names]


def reply(body: dict[str, Any]) -> str:
    prompt = str(next(m["content"] for m in body["messages"] if m["role"] == "user"))
    run, task = RUN_MARK.search(prompt), TASK_MARK.search(prompt)
    return f"output-of-{run.group(1) if run else '?'}-{task.group(1) if task else '?'}"


@pytest.fixture
def stub() -> Iterator[OpenAIStub]:
    with OpenAIStub(reply=reply) as server:
        yield server


def wait_until_ended(troupe: Troupe, names: list[str], timeout: float) -> None:
    def ended() -> bool:
        return all(troupe.status(name).get("phase") in ENDED for name in names)

    wait_for(ended, timeout=timeout, interval=0.2, what=f"{names} to end")


def assert_every_run_clean(troupe: Troupe, stub: OpenAIStub, names: list[str]) -> None:
    """Every run Succeeded; one Job, one attempt, one model request per task; outputs kept."""
    requests = Counter()
    for request in stub.chat_requests:
        user = (m["content"] for m in request.body["messages"] if m["role"] == "user")
        prompt = str(next(user))
        run, task = RUN_MARK.search(prompt), TASK_MARK.search(prompt)
        requests[(run.group(1) if run else "?", task.group(1) if task else "?")] += 1
    for name in names:
        status = troupe.status(name)
        assert status.get("phase") == "Succeeded", (name, status.get("message"))
        run = troupe.run(name)
        jobs = sorted(job.metadata.name for job in troupe.jobs(name))
        assert jobs == sorted(run.job_name(task, 1) for task in TASKS), f"{name}: {jobs}"
        assert {t: s["attempts"] for t, s in status["tasks"].items()} == dict.fromkeys(TASKS, 1)
        assert {t: requests[(name, t)] for t in TASKS} == dict.fromkeys(TASKS, 1), name
        outputs = troupe.config_maps(name)
        for task in TASKS:
            data = outputs[run.output_config_map(task)]
            assert data["output"] == f"output-of-{name}-{task}", (name, task)
        events = [e for e in troupe.core.list_namespaced_event("default").items]
        posted = [(e.reason, e.message, e.count) for e in events if e.involved_object.name == name]
        assert all(count == 1 for _, _, count in posted), f"{name}: an Event was posted twice"
        assert len({(reason, message) for reason, message, _ in posted}) == len(posted)


def reconcile_errors() -> float:
    value = REGISTRY.get_sample_value(
        "controller_runtime_reconcile_errors_total", {"controller": "workflow"}
    )
    return value or 0.0


def test_every_run_succeeds_when_a_tenth_of_the_operators_requests_fail(
    troupe: Troupe, stub: OpenAIStub, emulator: EmulatedCluster
) -> None:
    names = [f"faulty-{i}" for i in range(3)]
    troupe.apply(agent("worker", stub.base_url), *runs(*names))
    errors_before = reconcile_errors()
    faults = emulator.faults
    faults.seed(8)
    for client in (OPERATOR, KOPF):
        faults.fail(client, 500, fraction=0.04)
        faults.fail(client, 429, retry_after=1, fraction=0.03)
        faults.delay(client, 20, then_fail=504, fraction=0.03)
    with troupe.operator():
        wait_until_ended(troupe, names, timeout=240)
        faults.clear()
    assert faults.injected["fail"] > 0 and faults.injected["delay"] > 0
    assert reconcile_errors() > errors_before, "failed reconciles are counted"
    assert_every_run_clean(troupe, stub, names)


@pytest.mark.parametrize("status", [500, 429])
def test_one_refused_job_create_is_retried_and_the_run_gets_its_status(
    troupe: Troupe, stub: OpenAIStub, emulator: EmulatedCluster, status: int
) -> None:
    """Reproduced: one 500 or 429 on the POST that creates a Job left the run stuck 400 s+."""
    creates = Target("troupe-operator", verbs={"create"}, resource="jobs")
    emulator.faults.fail(creates, status, retry_after=1 if status == 429 else None, count=1)
    troupe.apply(agent("worker", stub.base_url), *runs("once"))
    with troupe.operator(resync_seconds=120):  # the retry must come from the backoff
        wait_until_ended(troupe, ["once"], timeout=90)
    assert emulator.faults.injected["fail"] == 1
    assert_every_run_clean(troupe, stub, ["once"])


def test_task_pods_finish_what_they_paid_for_when_output_writes_fail(
    troupe: Troupe, stub: OpenAIStub, emulator: EmulatedCluster
) -> None:
    """Reproduced: one 5xx or 429 on the output write failed the task after the model call."""
    writes = Target("troupe-agent", verbs={"create", "update", "patch"}, resource="configmaps")
    emulator.faults.seed(5)
    emulator.faults.fail(writes, 503, fraction=0.2)
    emulator.faults.fail(writes, 429, retry_after=1, fraction=0.1)
    troupe.apply(agent("worker", stub.base_url), *runs("paid"))
    with troupe.operator():
        wait_until_ended(troupe, ["paid"], timeout=180)
    assert emulator.faults.injected["fail"] > 0
    assert_every_run_clean(troupe, stub, ["paid"])


def test_every_run_succeeds_when_watches_are_cut_every_two_seconds(
    troupe: Troupe, stub: OpenAIStub, emulator: EmulatedCluster
) -> None:
    names = ["cut-0", "cut-1"]
    emulator.faults.cut_watches(Target("kopf", verbs={"watch"}), every=2)
    troupe.apply(agent("worker", stub.base_url), *runs(*names))
    with troupe.operator():
        wait_until_ended(troupe, names, timeout=180)
    assert emulator.faults.injected["watch-cut"] >= 2
    assert_every_run_clean(troupe, stub, names)
    for name in names:
        assert_no_task_waited_longer_than(troupe, name, seconds=troupe_resync() + 3)


def troupe_resync() -> float:
    from tests.integration.troupe_driver import TEST_CONFIG

    return TEST_CONFIG.resync_seconds


def completed_at(job: Any) -> datetime | None:
    return job.status.completion_time if job.status else None


def assert_no_task_waited_longer_than(troupe: Troupe, name: str, seconds: float) -> None:
    """Each task's Job was created within ``seconds`` of its last upstream Job finishing."""
    jobs = {job.metadata.labels["troupe.dev/task"]: job for job in troupe.jobs(name)}
    for task in eight_tasks():
        finished = [completed_at(jobs[dep]) for dep in task["dependsOn"]]
        if not finished:
            continue
        assert all(finished), f"{name}/{task['name']}: an upstream Job did not complete"
        waited = (jobs[task["name"]].metadata.creation_timestamp - max(finished)).total_seconds()
        assert waited <= seconds, f"{name}/{task['name']} waited {waited}s for its upstream"


class ParallelismSampler:
    """Counts each Workflow's unfinished Jobs, from the test's own client, every 20 ms."""

    def __init__(self, troupe: Troupe) -> None:
        self.batch = kubernetes.client.BatchV1Api(troupe.api)
        self.most: Counter[str] = Counter()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> ParallelismSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join(10)

    def _sample(self) -> None:
        while not self._done.is_set():
            running: Counter[str] = Counter()
            for job in self.batch.list_namespaced_job("default").items:
                if not (job.status and job.status.conditions):
                    running[job.metadata.labels["troupe.dev/workflow"]] += 1
            for name, count in running.items():
                self.most[name] = max(self.most[name], count)
            time.sleep(0.02)


@pytest.mark.timeout(900)
def test_twenty_restarts_at_random_moments_lose_and_repeat_nothing(
    troupe: Troupe, stub: OpenAIStub, emulator: EmulatedCluster
) -> None:
    chooser = random.Random(20)
    troupe.apply(agent("worker", stub.base_url))
    names: list[str] = []
    restarts = 0
    with ParallelismSampler(troupe) as sampler:
        while restarts < 20:
            if not names or all(troupe.status(n).get("phase") in ENDED for n in names[-3:]):
                batch = [f"restart-{len(names) + i}" for i in range(3)]
                troupe.apply(*runs(*batch, parallelism=2))
                names += batch
            if restarts % 3 == 1:  # the new operator's Job list arrives late
                emulator.faults.delay(Target("kopf", verbs={"list"}, resource="jobs"), 2, count=1)
            with troupe.operator():
                time.sleep(chooser.uniform(0.3, 2.5))
            restarts += 1
        with troupe.operator():
            wait_until_ended(troupe, names, timeout=300)
    assert_every_run_clean(troupe, stub, names)
    assert max(sampler.most.values()) <= 2, sampler.most


def test_a_lost_complete_event_costs_at_most_one_resync(
    troupe: Troupe, stub: OpenAIStub, emulator: EmulatedCluster
) -> None:
    def is_top_completing(kind: str, job: dict[str, Any]) -> bool:
        conditions = (job.get("status") or {}).get("conditions") or []
        labels = job["metadata"].get("labels") or {}
        return labels.get("troupe.dev/task") == "top" and any(
            c["type"] == "Complete" and c["status"] == "True" for c in conditions
        )

    lost = emulator.faults.drop_event(Target("kopf", resource="jobs"), is_top_completing)
    # A one-hour run timeout must not stretch the resync (3600 s was seen).
    troupe.apply(agent("worker", stub.base_url), *runs("lost", timeoutSeconds=3600))
    with troupe.operator():
        wait_until_ended(troupe, ["lost"], timeout=120)
    assert lost.injected == 1
    assert_every_run_clean(troupe, stub, ["lost"])
    assert_no_task_waited_longer_than(troupe, "lost", seconds=troupe_resync() + 3)


def test_an_operator_that_gets_a_watch_error_exits_and_its_restart_finishes_the_run(
    troupe: Troupe, stub: OpenAIStub, emulator: EmulatedCluster, kubeconfig: pathlib.Path
) -> None:
    job_watches = Target("kopf", verbs={"watch"}, resource="jobs")
    emulator.faults.cut_watches(job_watches, every=2)  # so that a new stream opens mid-run
    troupe.apply(agent("worker", stub.base_url), *runs("erred"))
    with troupe.operator_process(kubeconfig) as operator:
        wait_for(lambda: troupe.jobs("erred"), timeout=60, what="the first Jobs")
        emulator.faults.watch_error(job_watches)
        wait_for(lambda: operator.exits, timeout=60, what="the operator to exit")
        emulator.faults.clear()
        wait_until_ended(troupe, ["erred"], timeout=120)
    assert operator.exits[0] != 0, "a watch kopf gave up on must end the process"
    assert_every_run_clean(troupe, stub, ["erred"])


def test_a_finished_upstream_job_deleted_before_its_downstream_starts(
    troupe: Troupe, stub: OpenAIStub
) -> None:
    """Reproduced: a TTL-deleted upstream Job made its downstream fail for good (3 of 3)."""
    tasks = [
        {"name": "early"},
        {"name": "hold", "agent": "slow"},
        {
            "name": "late",
            "dependsOn": ["early", "hold"],
            "prompt": "TASK=late {{ tasks.early.output }}",
        },
    ]
    batch = kubernetes.client.BatchV1Api(troupe.api)
    with OpenAIStub(reply=reply) as slow_stub:
        slow_stub.inject(Fault.slow(6))
        troupe.apply(
            agent("worker", stub.base_url),
            agent("slow", slow_stub.base_url, timeoutSeconds=60),
            workflow("pruned", tasks),
        )
        with troupe.operator():
            wait_for(
                lambda: (
                    troupe.status("pruned").get("tasks", {}).get("early", {}).get("phase")
                    == "Succeeded"
                ),
                timeout=60,
                what="early to succeed",
            )
            assert troupe.status("pruned")["tasks"]["late"]["phase"] == "Pending"
            early = troupe.run("pruned").job_name("early", 1)
            batch.delete_namespaced_job(early, "default", propagation_policy="Background")
            status = troupe.wait_for_phase("pruned", *ENDED, timeout=60)
    assert status["phase"] == "Succeeded", status.get("message")
    assert status["tasks"]["late"]["attempts"] == 1
    assert "output-of-" in str(stub.chat_requests[-1].body)


def test_one_503_on_the_final_status_write_still_ends_in_succeeded(
    troupe: Troupe, stub: OpenAIStub, emulator: EmulatedCluster
) -> None:
    troupe.apply(agent("worker", stub.base_url), workflow("last", [{"name": "only"}]))
    with troupe.operator():
        wait_for(lambda: stub.chat_requests, timeout=60, what="the only task calling the model")
        refused = emulator.faults.fail(
            Target("troupe-operator", verbs={"patch"}, resource="workflows/status"), 503, count=1
        )
        status = troupe.wait_for_phase("last", *ENDED, timeout=60)
    assert status["phase"] == "Succeeded" and refused.injected == 1
    assert Counter(troupe.event_reasons("last"))["WorkflowSucceeded"] == 1
