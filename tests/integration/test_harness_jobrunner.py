"""The Job runner runs Jobs' commands locally and reports like the Job controller."""

from __future__ import annotations

import base64
import sys
from typing import Any

from kubernetes.client import ApiClient, BatchV1Api, CoreV1Api, V1Job

from tests.support.jobrunner import JobRunner
from tests.support.waiting import wait_for


def _job(name: str, code: str, **spec: Any) -> dict[str, Any]:
    container = {
        "name": "main",
        "image": "ignored",
        "command": [sys.executable, "-c", code],
        **spec.pop("container", {}),
    }
    volumes = spec.pop("volumes", [])
    return {
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            **spec,
            "template": {
                "metadata": {"labels": {"app": "test"}},
                "spec": {"restartPolicy": "Never", "containers": [container], "volumes": volumes},
            },
        },
    }


def _finished_job(batch: BatchV1Api, name: str, timeout: float = 10) -> V1Job:
    def finished() -> V1Job | None:
        job: V1Job = batch.read_namespaced_job(name, "default")
        conditions = job.status.conditions if job.status else None
        return job if any(c.type in {"Complete", "Failed"} for c in conditions or []) else None

    return wait_for(finished, timeout=timeout, what=f"job {name} to finish")


def _condition(job: V1Job, kind: str) -> Any:
    return next(c for c in job.status.conditions if c.type == kind)


def _pods(core: CoreV1Api, job_name: str) -> list[Any]:
    return list(core.list_namespaced_pod("default", label_selector=f"job-name={job_name}").items)


def test_successful_job_completes_with_pod_and_status(
    kube_api: ApiClient, job_runner: JobRunner
) -> None:
    batch, core = BatchV1Api(kube_api), CoreV1Api(kube_api)
    batch.create_namespaced_job("default", _job("ok", "print('hello from the job')"))
    job = _finished_job(batch, "ok")
    assert _condition(job, "Complete").reason == "CompletionsReached"
    assert job.status.succeeded == 1 and job.status.active == 0
    assert job.status.start_time and job.status.completion_time
    [pod] = _pods(core, "ok")
    assert pod.metadata.name.startswith("ok-") and len(pod.metadata.name) == len("ok-") + 5
    assert pod.metadata.labels["app"] == "test"
    assert pod.metadata.labels["controller-uid"] == job.metadata.uid
    assert pod.metadata.owner_references[0].uid == job.metadata.uid
    assert pod.status.phase == "Succeeded"
    assert pod.status.container_statuses[0].state.terminated.exit_code == 0
    assert job_runner.log_of("default", pod.metadata.name) == "hello from the job\n"


def test_failing_job_retries_until_backoff_limit(
    kube_api: ApiClient, job_runner: JobRunner
) -> None:
    batch, core = BatchV1Api(kube_api), CoreV1Api(kube_api)
    batch.create_namespaced_job("default", _job("bad", "raise SystemExit(3)", backoffLimit=2))
    job = _finished_job(batch, "bad")
    assert _condition(job, "Failed").reason == "BackoffLimitExceeded"
    assert job.status.failed == 3
    pods = _pods(core, "bad")
    assert len(pods) == 3
    assert {pod.status.container_statuses[0].state.terminated.exit_code for pod in pods} == {3}


def test_active_deadline_kills_the_process(kube_api: ApiClient, job_runner: JobRunner) -> None:
    batch, core = BatchV1Api(kube_api), CoreV1Api(kube_api)
    batch.create_namespaced_job(
        "default", _job("slow", "import time; time.sleep(60)", activeDeadlineSeconds=1)
    )
    job = _finished_job(batch, "slow")
    assert _condition(job, "Failed").reason == "DeadlineExceeded"
    [pod] = _pods(core, "slow")
    assert pod.status.phase == "Failed"


def test_pod_failure_policy_fails_the_job_at_once(
    kube_api: ApiClient, job_runner: JobRunner
) -> None:
    batch, core = BatchV1Api(kube_api), CoreV1Api(kube_api)
    policy = {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}]}
    batch.create_namespaced_job(
        "default", _job("fatal", "raise SystemExit(42)", backoffLimit=5, podFailurePolicy=policy)
    )
    job = _finished_job(batch, "fatal")
    failed = _condition(job, "Failed")
    assert failed.reason == "PodFailurePolicy"
    assert "exit code 42 matching FailJob rule at index 0" in failed.message
    assert len(_pods(core, "fatal")) == 1


def test_volumes_env_and_termination_message_reach_the_process(
    kube_api: ApiClient, job_runner: JobRunner
) -> None:
    batch, core = BatchV1Api(kube_api), CoreV1Api(kube_api)
    core.create_namespaced_config_map(
        "default", {"metadata": {"name": "input"}, "data": {"prompt.txt": "say hi"}}
    )
    core.create_namespaced_secret(
        "default",
        {"metadata": {"name": "key"}, "data": {"token": base64.b64encode(b"s3cret").decode()}},
    )
    code = (
        "import os, sys, pathlib\n"
        "prompt = pathlib.Path(sys.argv[1]).read_text()\n"
        "message = '|'.join([prompt, os.environ['API_KEY'], os.environ['MODE']])\n"
        "pathlib.Path(os.environ['MESSAGE_FILE']).write_text(message)\n"
        "assert os.environ['KUBECONFIG']\n"
        "raise SystemExit(1)\n"
    )
    container = {
        "args": ["/etc/troupe/input/prompt.txt"],
        "env": [
            {"name": "MODE", "value": "task"},
            {"name": "MESSAGE_FILE", "value": "/dev/termination-log"},
            {"name": "API_KEY", "valueFrom": {"secretKeyRef": {"name": "key", "key": "token"}}},
        ],
        "volumeMounts": [{"name": "input", "mountPath": "/etc/troupe/input", "readOnly": True}],
    }
    volumes = [{"name": "input", "configMap": {"name": "input"}}]
    batch.create_namespaced_job("default", _job("io", code, container=container, volumes=volumes))
    _finished_job(batch, "io")
    [pod] = _pods(core, "io")
    assert pod.status.container_statuses[0].state.terminated.message == "say hi|s3cret|task"


def test_deleting_a_running_job_kills_it(kube_api: ApiClient, job_runner: JobRunner) -> None:
    batch, core = BatchV1Api(kube_api), CoreV1Api(kube_api)
    batch.create_namespaced_job("default", _job("doomed", "import time; time.sleep(60)"))
    wait_for(
        lambda: [p for p in _pods(core, "doomed") if p.status.phase == "Running"],
        what="pod running",
    )
    batch.delete_namespaced_job("doomed", "default")
    wait_for(lambda: not _pods(core, "doomed") or None, what="pods collected")
    wait_for(lambda: not job_runner.running_jobs or None, what="process killed")
