"""Retry and stop end to end: the real operator, Job runner, task processes and the OpenAI
stub, with the requests made by ``troupe retry`` and ``troupe stop`` (real processes, as a
Tenant's owner who holds troupe-edit and nothing else)."""

from __future__ import annotations

import pathlib
import threading
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest

from tests.integration.test_cli_cluster import owner_kubeconfig, troupe_cli
from tests.integration.troupe_driver import Troupe, agent, reply_naming_the_task
from tests.integration.troupe_driver import workflow as workflow_of
from tests.support.emulator import EmulatedCluster
from tests.support.openai_stub import Fault, OpenAIStub
from tests.support.waiting import wait_for
from troupe_operator.remote import exit_codes


def chain(*agents: str) -> list[dict[str, Any]]:
    """t1 → t2 → ... on the given Agents, each prompt naming its task for the stub."""
    return [
        {
            "name": f"t{n}",
            "agent": name,
            "prompt": f"TASK=t{n}",
            "dependsOn": [f"t{n - 1}"] * (n > 1),
        }
        for n, name in enumerate(agents, start=1)
    ]


def ask(kubeconfig: pathlib.Path, *verb: str) -> None:
    done = troupe_cli(kubeconfig, *verb)
    assert done.returncode == exit_codes.OK, done.stderr


def asked_for(stub: OpenAIStub, task: str) -> int:
    return sum(f"TASK={task}" in str(request.body) for request in stub.chat_requests)


def key_secret(value: str) -> kubernetes.client.V1Secret:
    return kubernetes.client.V1Secret(
        metadata=kubernetes.client.V1ObjectMeta(name="llm-key"), string_data={"api-key": value}
    )


@pytest.fixture
def stubs() -> Iterator[tuple[OpenAIStub, OpenAIStub]]:
    """An open endpoint, and one that takes only the key ``right``."""
    with (
        OpenAIStub(reply=reply_naming_the_task) as open_endpoint,
        OpenAIStub(reply=reply_naming_the_task, api_key="right") as keyed,
    ):
        yield open_endpoint, keyed


def test_a_run_failed_by_a_wrong_key_finishes_on_retry_without_repaying_its_first_tasks(
    troupe: Troupe,
    stubs: tuple[OpenAIStub, OpenAIStub],
    emulator: EmulatedCluster,
    tmp_path: pathlib.Path,
) -> None:
    open_endpoint, keyed = stubs
    kubeconfig = owner_kubeconfig(emulator, tmp_path / "owner")
    writer = agent("writer", keyed.base_url)
    writer["spec"]["model"]["apiKeySecretRef"] = {"name": "llm-key", "key": "api-key"}
    troupe.core.create_namespaced_secret("default", key_secret("wrong"))
    troupe.apply(
        agent("worker", open_endpoint.base_url),
        writer,
        workflow_of("keyed", chain("worker", "worker", "writer", "writer")),
    )
    with troupe.operator():
        failed = troupe.wait_for_phase("keyed", "Succeeded", "Failed", timeout=90)
        assert failed["phase"] == "Failed", failed.get("message")
        assert failed["tasks"]["t3"]["phase"] == "Failed"
        assert "401" in failed["tasks"]["t3"]["message"]
        assert failed["tasks"]["t4"]["phase"] == "Skipped"
    troupe.core.patch_namespaced_secret("llm-key", "default", key_secret("right"))
    ask(kubeconfig, "retry", "keyed")  # while no operator answers it
    unanswered = troupe_cli(kubeconfig, "wait", "keyed", "--timeout", "2")
    assert unanswered.returncode == exit_codes.TIMEOUT, unanswered.stdout  # not the old Failed
    with troupe.operator():
        ask(kubeconfig, "wait", "keyed", "--timeout", "120")
    status = troupe.status("keyed")
    assert status["retries"] == 1 and status["progress"] == "4/4"
    assert status["tasks"]["t3"]["attempts"] == 2
    assert (asked_for(open_endpoint, "t1"), asked_for(open_endpoint, "t2")) == (1, 1)
    assert (asked_for(keyed, "t3"), asked_for(keyed, "t4")) == (2, 1)  # the 401, then the retry
    assert "WorkflowRetried" in troupe.event_reasons("keyed")


def test_a_stopped_chain_loses_its_job_at_once_and_a_retry_finishes_it(
    troupe: Troupe,
    stubs: tuple[OpenAIStub, OpenAIStub],
    emulator: EmulatedCluster,
    tmp_path: pathlib.Path,
) -> None:
    open_endpoint, _ = stubs
    kubeconfig = owner_kubeconfig(emulator, tmp_path / "owner")
    release = threading.Event()
    open_endpoint.inject(Fault(), Fault.held(release))  # t1 answers, t2 waits
    troupe.apply(
        agent("worker", open_endpoint.base_url), workflow_of("stopped", chain(*["worker"] * 3))
    )
    with troupe.operator():

        def t2_held() -> bool:
            tasks = troupe.status("stopped").get("tasks") or {}
            return (tasks.get("t2") or {}).get("phase") == "Running" and asked_for(
                open_endpoint, "t2"
            ) == 1

        wait_for(t2_held, timeout=60, what="t2 to be running, held by the stub")
        ask(kubeconfig, "stop", "stopped", "--message", "wrong topic")
        status = troupe.wait_for_phase("stopped", "Failed", timeout=30)
        wait_for(
            lambda: (
                [j for j in troupe.jobs("stopped") if j.metadata.labels["troupe.dev/task"] == "t2"]
                == []
            ),
            timeout=30,
            what="t2's Job deleted",
        )
        assert status["message"] == "stopped: wrong topic"
        ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        assert ready["reason"] == "Stopped"
        assert {n: t["phase"] for n, t in status["tasks"].items()} == {
            "t1": "Succeeded",
            "t2": "Cancelled",
            "t3": "Skipped",
        }
        release.set()
        ask(kubeconfig, "retry", "stopped")
        status = troupe.wait_for_phase("stopped", "Succeeded", timeout=90)
    assert status["tasks"]["t2"]["attempts"] == 2
    assert asked_for(open_endpoint, "t1") == 1
