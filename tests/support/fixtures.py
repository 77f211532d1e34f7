"""Pytest fixtures for the harness: emulator, kubeconfig, API clients, job runner, LLM stub.

Registered for the whole test suite by `tests/conftest.py` (`pytest_plugins`). Each fixture
is function-scoped: every server starts in milliseconds and a test never sees another
test's objects.
"""

from __future__ import annotations

import functools
import pathlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import kopf
import kubernetes
import pytest

from tests.support.emulator import EmulatedCluster
from tests.support.jobrunner import JobRunner
from tests.support.kopf_runner import running_operator
from tests.support.openai_stub import OpenAIStub

REPO_CRDS = pathlib.Path(__file__).resolve().parents[2] / "crds"


@pytest.fixture
def emulator() -> Iterator[EmulatedCluster]:
    """A running emulator with the repo's CRDs (`crds/*.yaml`) served and a `default` namespace."""
    with EmulatedCluster() as cluster:
        cluster.create_namespace("default")
        for crd_file in sorted(REPO_CRDS.glob("*.yaml")):
            cluster.load_crds(crd_file)
        yield cluster


@pytest.fixture
def kubeconfig(emulator: EmulatedCluster, tmp_path: pathlib.Path) -> pathlib.Path:
    """A kubeconfig file pointing at the emulator (for kubectl, subprocesses, `config.load_*`)."""
    return emulator.write_kubeconfig(tmp_path / "kubeconfig")


@pytest.fixture
def kube_api(emulator: EmulatedCluster) -> Iterator[kubernetes.client.ApiClient]:
    """A `kubernetes` client configured for the emulator (wrap it in CoreV1Api etc.)."""
    with kubernetes.client.ApiClient(
        kubernetes.client.Configuration(host=emulator.url)
    ) as api_client:
        yield api_client


ClientAs = Callable[[str, str], kubernetes.client.ApiClient]


@pytest.fixture
def kube_api_as(emulator: EmulatedCluster) -> Iterator[ClientAs]:
    """`kube_api_as(namespace, service_account)`: a client with that ServiceAccount's token.

    What it may do is what RBAC grants the ServiceAccount (403 otherwise), as in a Pod.
    """
    clients: list[kubernetes.client.ApiClient] = []

    def client_as(namespace: str, service_account: str) -> kubernetes.client.ApiClient:
        configuration = kubernetes.client.Configuration(
            host=emulator.url,
            api_key={"authorization": emulator.token_for(namespace, service_account)},
            api_key_prefix={"authorization": "Bearer"},
        )
        clients.append(kubernetes.client.ApiClient(configuration))
        return clients[-1]

    yield client_as
    for client in clients:
        client.close()  # type: ignore[no-untyped-call]  # untyped upstream


@pytest.fixture
def job_runner(emulator: EmulatedCluster, tmp_path: pathlib.Path) -> Iterator[JobRunner]:
    """Runs the emulator's Jobs as local processes (see `tests.support.jobrunner`); the
    emulator serves their Pods' logs from what the processes wrote."""
    with JobRunner(emulator.url, tmp_path / "pods") as runner:
        emulator.handler.pod_logs.source = runner.log_file
        yield runner
        emulator.handler.pod_logs.source = None


@pytest.fixture
def openai_stub() -> Iterator[OpenAIStub]:
    """An OpenAI-compatible server: `.base_url`, `.script()`, `.inject(Fault...)`, `.requests`."""
    with OpenAIStub() as stub:
        yield stub


RunOperator = Callable[..., AbstractContextManager[kopf.OperatorSettings]]


@pytest.fixture
def run_operator(emulator: EmulatedCluster) -> RunOperator:
    """`with run_operator(registry, namespaces=..., settings=...):` runs kopf on the emulator."""
    return functools.partial(running_operator, api_url=emulator.url)
