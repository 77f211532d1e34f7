"""The Job runner as a kubelet: the pod's identity, and Pods that cannot start yet."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from kubernetes.client import ApiClient, BatchV1Api, CoreV1Api, RbacAuthorizationV1Api

from tests.support.job_probes import (
    active_and_ready,
    condition,
    events_about,
    finished_job,
    pods_of,
    waiting_state,
)
from tests.support.jobrunner import JobRunner
from tests.support.samples import python_job
from tests.support.waiting import wait_for

# Reads two ConfigMaps with the pod's own kubeconfig; reports the HTTP status of each
# as its termination message (the file named by its argument).
READ_AS_POD = """
import json, os, pathlib, sys, urllib.error, urllib.request, yaml
config = yaml.safe_load(pathlib.Path(os.environ["KUBECONFIG"]).read_text())
server = config["clusters"][0]["cluster"]["server"]
token = config["users"][0]["user"]["token"]
codes = []
for name in ("allowed", "other"):
    url = f"{server}/api/v1/namespaces/default/configmaps/{name}"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        codes.append(str(urllib.request.urlopen(request).status))
    except urllib.error.HTTPError as error:
        codes.append(str(error.code))
pathlib.Path(sys.argv[1]).write_text(" ".join(codes))
"""

MESSAGE_ARG = {"args": ["/dev/termination-log"]}


def _terminated_message(core: CoreV1Api, job_name: str) -> str:
    [pod] = pods_of(core, job_name)
    return str(pod.status.container_statuses[0].state.terminated.message)


def test_the_process_acts_as_its_pods_service_account(
    kube_api: ApiClient, job_runner: JobRunner
) -> None:
    core, rbac = CoreV1Api(kube_api), RbacAuthorizationV1Api(kube_api)
    for name in ("allowed", "other"):
        core.create_namespaced_config_map("default", {"metadata": {"name": name}})
    core.create_namespaced_service_account("default", {"metadata": {"name": "reader"}})
    rule = {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["allowed"]}
    rbac.create_namespaced_role(
        "default", {"metadata": {"name": "reader"}, "rules": [{**rule, "verbs": ["get"]}]}
    )
    rbac.create_namespaced_role_binding(
        "default",
        {
            "metadata": {"name": "reader"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "reader"}],
        },
    )
    batch = BatchV1Api(kube_api)
    batch.create_namespaced_job(
        "default",
        python_job("as-reader", READ_AS_POD, service_account="reader", container=MESSAGE_ARG),
    )
    batch.create_namespaced_job(
        "default", python_job("as-default", READ_AS_POD, container=MESSAGE_ARG)
    )
    for job, expected in (("as-reader", "200 403"), ("as-default", "403 403")):
        assert condition(finished_job(batch, job), "Complete")
        assert _terminated_message(core, job) == expected


def test_a_missing_service_account_holds_the_pod_back_until_it_exists(
    kube_api: ApiClient, job_runner: JobRunner
) -> None:
    batch, core = BatchV1Api(kube_api), CoreV1Api(kube_api)
    batch.create_namespaced_job("default", python_job("late", "pass", service_account="late"))
    refused = wait_for(lambda: events_about(core, "late", "FailedCreate"), what="FailedCreate")
    assert refused == [
        'Error creating: pods "late-" is forbidden: error looking up service account'
        ' default/late: serviceaccount "late" not found'
    ]
    assert pods_of(core, "late") == []
    assert active_and_ready(batch, "late") == (0, 0)
    core.create_namespaced_service_account("default", {"metadata": {"name": "late"}})
    assert condition(finished_job(batch, "late"), "Complete")


def _secret(name: str, **data: str) -> Callable[[CoreV1Api], Any]:
    body = {"metadata": {"name": name}, "stringData": data}
    return lambda core: core.create_namespaced_secret("default", body)


def _config_map(name: str, **data: str) -> Callable[[CoreV1Api], Any]:
    body = {"metadata": {"name": name}, "data": data}
    return lambda core: core.create_namespaced_config_map("default", body)


def _from_secret(name: str, key: str, **options: Any) -> dict[str, Any]:
    return {
        "env": [{"name": "V", "valueFrom": {"secretKeyRef": {"name": name, "key": key, **options}}}]
    }


@pytest.mark.parametrize(
    ("pod", "given", "waiting", "fix"),
    [
        (
            {"container": _from_secret("creds", "token")},
            None,
            ("CreateContainerConfigError", 'secret "creds" not found'),
            _secret("creds", token="t"),
        ),
        (
            {"container": _from_secret("creds", "token")},
            _secret("creds", other="x"),
            ("CreateContainerConfigError", "couldn't find key token in Secret default/creds"),
            lambda core: core.patch_namespaced_secret(
                "creds", "default", {"stringData": {"token": "t"}}
            ),
        ),
        (
            {"container": {"envFrom": [{"configMapRef": {"name": "settings"}}]}},
            None,
            ("CreateContainerConfigError", 'configmap "settings" not found'),
            _config_map("settings", mode="fast"),
        ),
        (
            {
                "volumes": [{"name": "input", "configMap": {"name": "input"}}],
                "container": {"volumeMounts": [{"name": "input", "mountPath": "/in"}]},
            },
            None,
            ("ContainerCreating", None),
            _config_map("input", prompt="hi"),
        ),
    ],
    ids=["missing-secret", "missing-key", "missing-configmap", "missing-volume-source"],
)
def test_missing_configuration_keeps_the_container_waiting_until_it_appears(
    kube_api: ApiClient,
    job_runner: JobRunner,
    pod: dict[str, Any],
    given: Callable[[CoreV1Api], Any] | None,
    waiting: tuple[str, str | None],
    fix: Callable[[CoreV1Api], Any],
) -> None:
    batch, core = BatchV1Api(kube_api), CoreV1Api(kube_api)
    if given is not None:
        given(core)
    batch.create_namespaced_job("default", python_job("configured", "pass", **pod))
    assert (
        wait_for(lambda: waiting_state(core, "configured"), what="a waiting container") == waiting
    )
    assert active_and_ready(batch, "configured") == (1, 0)
    [stuck] = pods_of(core, "configured")
    assert stuck.status.phase == "Pending"
    fix(core)
    assert condition(finished_job(batch, "configured"), "Complete")
    assert len(pods_of(core, "configured")) == 1, "the same Pod started: no failed attempt"


def test_optional_sources_may_be_missing(kube_api: ApiClient, job_runner: JobRunner) -> None:
    batch = BatchV1Api(kube_api)
    code = "import os; assert 'V' not in os.environ"
    job = python_job("optional", code, container=_from_secret("none", "k", optional=True))
    batch.create_namespaced_job("default", job)
    assert condition(finished_job(batch, "optional"), "Complete")


def test_a_waiting_pod_still_meets_its_deadline(kube_api: ApiClient, job_runner: JobRunner) -> None:
    batch = BatchV1Api(kube_api)
    job = python_job("stuck", "pass", activeDeadlineSeconds=1, container=_from_secret("none", "k"))
    batch.create_namespaced_job("default", job)
    assert condition(finished_job(batch, "stuck"), "Failed").reason == "DeadlineExceeded"


def test_unpullable_images_back_off_forever(kube_api: ApiClient, job_runner: JobRunner) -> None:
    job_runner.unpullable_images = lambda image: image.startswith("registry.example/")
    batch, core = BatchV1Api(kube_api), CoreV1Api(kube_api)
    job = python_job("pull", "pass", container={"image": "registry.example/agent:1"})
    batch.create_namespaced_job("default", job)

    def backing_off() -> tuple[str, str | None] | None:
        state = waiting_state(core, "pull")
        return state if state and state[0] == "ImagePullBackOff" else None

    state = wait_for(backing_off, what="ImagePullBackOff")
    assert state == ("ImagePullBackOff", 'Back-off pulling image "registry.example/agent:1"')
    assert active_and_ready(batch, "pull") == (1, 0)
    assert wait_for(lambda: events_about(core, "pull", "Failed"), what="the pull failure")


def test_unschedulable_jobs_stay_pending(kube_api: ApiClient, job_runner: JobRunner) -> None:
    job_runner.unschedulable_jobs = lambda job: job["metadata"]["name"] == "huge"
    batch, core = BatchV1Api(kube_api), CoreV1Api(kube_api)
    batch.create_namespaced_job("default", python_job("huge", "pass"))
    batch.create_namespaced_job("default", python_job("small", "pass"))
    assert condition(finished_job(batch, "small"), "Complete")
    message = wait_for(lambda: events_about(core, "huge", "FailedScheduling"), what="scheduling")
    assert message == ["0/1 nodes are available: 1 Insufficient cpu."]
    [pod] = pods_of(core, "huge")
    scheduled = condition(pod, "PodScheduled")
    assert (pod.status.phase, scheduled.status, scheduled.reason) == (
        "Pending",
        "False",
        "Unschedulable",
    )


def test_the_termination_message_keeps_its_first_4096_bytes(
    kube_api: ApiClient, job_runner: JobRunner
) -> None:
    batch, core = BatchV1Api(kube_api), CoreV1Api(kube_api)
    code = "import pathlib, sys; pathlib.Path(sys.argv[1]).write_text('x' * 5000)"
    batch.create_namespaced_job("default", python_job("long", code, container=MESSAGE_ARG))
    finished_job(batch, "long")
    assert _terminated_message(core, "long") == "x" * 4096
