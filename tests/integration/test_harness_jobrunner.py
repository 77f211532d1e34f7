"""The Job runner runs Jobs' commands locally and reports like the Job controller."""

from __future__ import annotations

import base64

from kubernetes.client import ApiClient, BatchV1Api, CoreV1Api

from tests.support.job_probes import active_and_ready, condition, finished_job, pods_of
from tests.support.jobrunner import JobRunner
from tests.support.samples import python_job
from tests.support.waiting import wait_for


def test_successful_job_completes_with_pod_and_status(
    kube_api: ApiClient, job_runner: JobRunner
) -> None:
    batch, core = BatchV1Api(kube_api), CoreV1Api(kube_api)
    batch.create_namespaced_job("default", python_job("ok", "print('hello from the job')"))
    job = finished_job(batch, "ok")
    assert condition(job, "Complete").reason == "CompletionsReached"
    assert job.status.succeeded == 1 and job.status.active == 0
    assert job.status.start_time and job.status.completion_time
    [pod] = pods_of(core, "ok")
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
    batch.create_namespaced_job("default", python_job("bad", "raise SystemExit(3)", backoffLimit=2))
    job = finished_job(batch, "bad")
    assert condition(job, "Failed").reason == "BackoffLimitExceeded"
    assert job.status.failed == 3
    pods = pods_of(core, "bad")
    assert len(pods) == 3
    assert {pod.status.container_statuses[0].state.terminated.exit_code for pod in pods} == {3}


def test_active_deadline_kills_the_process(kube_api: ApiClient, job_runner: JobRunner) -> None:
    batch, core = BatchV1Api(kube_api), CoreV1Api(kube_api)
    batch.create_namespaced_job(
        "default", python_job("slow", "import time; time.sleep(60)", activeDeadlineSeconds=1)
    )
    job = finished_job(batch, "slow")
    assert condition(job, "Failed").reason == "DeadlineExceeded"
    [pod] = pods_of(core, "slow")
    assert pod.status.phase == "Failed"


def test_pod_failure_policy_fails_the_job_at_once(
    kube_api: ApiClient, job_runner: JobRunner
) -> None:
    batch, core = BatchV1Api(kube_api), CoreV1Api(kube_api)
    policy = {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}]}
    batch.create_namespaced_job(
        "default",
        python_job("fatal", "raise SystemExit(42)", backoffLimit=5, podFailurePolicy=policy),
    )
    job = finished_job(batch, "fatal")
    failed = condition(job, "Failed")
    assert failed.reason == "PodFailurePolicy"
    assert "exit code 42 matching FailJob rule at index 0" in failed.message
    assert len(pods_of(core, "fatal")) == 1


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
    batch.create_namespaced_job(
        "default", python_job("io", code, container=container, volumes=volumes)
    )
    finished_job(batch, "io")
    [pod] = pods_of(core, "io")
    assert pod.status.container_statuses[0].state.terminated.message == "say hi|s3cret|task"


def test_a_running_job_is_ready_and_deleting_it_kills_it(
    kube_api: ApiClient, job_runner: JobRunner
) -> None:
    batch, core = BatchV1Api(kube_api), CoreV1Api(kube_api)
    batch.create_namespaced_job("default", python_job("doomed", "import time; time.sleep(60)"))
    wait_for(lambda: active_and_ready(batch, "doomed") == (1, 1), what="the job ready")
    [pod] = pods_of(core, "doomed")
    assert pod.status.phase == "Running" and condition(pod, "Ready").status == "True"
    batch.delete_namespaced_job("doomed", "default")
    wait_for(lambda: not pods_of(core, "doomed") or None, what="pods collected")
    wait_for(lambda: not job_runner.running_jobs or None, what="process killed")
