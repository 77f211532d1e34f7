"""The emulator serves Pods' logs from what the Job runner's processes wrote, as
kube-apiserver relays the kubelet's: whole, tailed, followed, refused while waiting."""

from __future__ import annotations

import pathlib

import pytest
from kubernetes.client import ApiClient, BatchV1Api, CoreV1Api, RbacAuthorizationV1Api
from kubernetes.client.exceptions import ApiException

from tests.support.fixtures import ClientAs
from tests.support.job_probes import finished_job, pods_of, waiting_state
from tests.support.jobrunner import JobRunner
from tests.support.samples import python_job
from tests.support.waiting import wait_for


def _refusal(call: object, *args: object, **kwargs: object) -> tuple[int, str]:
    with pytest.raises(ApiException) as refused:
        call(*args, **kwargs)  # type: ignore[operator]
    return refused.value.status, str(refused.value.body)


def test_a_finished_pods_log_whole_and_tailed(kube_api: ApiClient, job_runner: JobRunner) -> None:
    batch, core = BatchV1Api(kube_api), CoreV1Api(kube_api)
    batch.create_namespaced_job("default", python_job("talk", "print('one'); print('two')"))
    finished_job(batch, "talk")
    [pod] = pods_of(core, "talk")
    name = pod.metadata.name
    assert core.read_namespaced_pod_log(name, "default") == "one\ntwo\n"
    assert core.read_namespaced_pod_log(name, "default", tail_lines=1) == "two\n"
    assert core.read_namespaced_pod_log(name, "default", container="main") == "one\ntwo\n"
    status, body = _refusal(core.read_namespaced_pod_log, name, "default", container="side")
    assert status == 400 and f"container side is not valid for pod {name}" in body
    assert _refusal(core.read_namespaced_pod_log, "nobody", "default")[0] == 404


def test_a_followed_log_streams_until_the_container_ends(
    kube_api: ApiClient, job_runner: JobRunner, tmp_path: pathlib.Path
) -> None:
    batch, core = BatchV1Api(kube_api), CoreV1Api(kube_api)
    go = tmp_path / "go"
    code = (
        "import pathlib, time\n"
        "print('before', flush=True)\n"
        f"while not pathlib.Path({str(go)!r}).exists(): time.sleep(0.02)\n"
        "print('after', flush=True)\n"
    )
    batch.create_namespaced_job("default", python_job("slow", code))
    pod = wait_for(lambda: pods_of(core, "slow"), what="the pod")[0].metadata.name
    wait_for(lambda: "before" in job_runner.log_of("default", pod), what="the first line")
    stream = core.read_namespaced_pod_log(pod, "default", follow=True, _preload_content=False)
    lines = stream.stream(amt=None)
    first = next(lines)
    assert first == b"before\n"
    go.touch()
    rest = b"".join(lines)  # ends once the container has terminated
    assert rest == b"after\n"


def test_a_container_not_started_has_no_log(kube_api: ApiClient, job_runner: JobRunner) -> None:
    job_runner.unpullable_images = lambda image: image.startswith("registry.example/")
    batch, core = BatchV1Api(kube_api), CoreV1Api(kube_api)
    job = python_job("stuck", "print('never')", container={"image": "registry.example/x:1"})
    batch.create_namespaced_job("default", job)
    wait_for(lambda: waiting_state(core, "stuck"), what="the container to wait")
    [pod] = pods_of(core, "stuck")
    status, body = _refusal(core.read_namespaced_pod_log, pod.metadata.name, "default")
    assert status == 400
    assert f'container \\"main\\" in pod \\"{pod.metadata.name}\\" is waiting to start' in body


def test_reading_logs_needs_get_on_pods_log(
    kube_api: ApiClient, kube_api_as: ClientAs, job_runner: JobRunner
) -> None:
    batch, core, rbac = BatchV1Api(kube_api), CoreV1Api(kube_api), RbacAuthorizationV1Api(kube_api)
    batch.create_namespaced_job("default", python_job("quiet", "print('hi')"))
    finished_job(batch, "quiet")
    pod = pods_of(core, "quiet")[0].metadata.name
    core.create_namespaced_service_account("default", {"metadata": {"name": "reader"}})
    rules = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]
    rbac.create_namespaced_role("default", {"metadata": {"name": "reader"}, "rules": rules})
    binding = {
        "metadata": {"name": "reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": "default"}],
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
    }
    rbac.create_namespaced_role_binding("default", binding)
    reader = CoreV1Api(kube_api_as("default", "reader"))
    status, body = _refusal(reader.read_namespaced_pod_log, pod, "default")
    assert status == 403 and 'cannot get resource \\"pods/log\\"' in body
