"""Memoized tasks end to end: the real operator, Job runner, agent runtime and OpenAI stub.

Each run's pods are real task processes holding their run's ServiceAccount token, so a
task reading an output served from the cache proves the grant the operator added to its
Role (the emulator evaluates RBAC for ServiceAccount tokens).
"""

from __future__ import annotations

import hashlib
import pathlib
from collections import Counter
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest

from tests.integration.test_cli_cluster import troupe_cli
from tests.integration.troupe_driver import (
    GROUP,
    TASK_MARK,
    VERSION,
    Troupe,
    agent,
    reply_naming_the_task,
    workflow,
)
from tests.support.emulator import EmulatedCluster
from tests.support.fixtures import ClientAs
from tests.support.openai_stub import OpenAIStub
from tests.support.waiting import wait_for
from troupe_operator.api import CACHE_KEY_LABEL
from troupe_operator.controller.cache_entries import entries_in
from troupe_operator.controller.handlers import Controller

TASKS = [
    {"name": "research", "prompt": "TASK=research on {{ inputs.topic }}"},
    {"name": "style", "prompt": "TASK=style in {{ inputs.tone }}"},
    {
        "name": "write",
        "dependsOn": ["research", "style"],
        "prompt": "TASK=write {{ tasks.research.output }} {{ tasks.style.output }}",
    },
]
INPUTS = {"topic": "vector databases", "tone": "dry"}


def reply_to_the_prompt(body: dict[str, Any]) -> str:
    """``output-of-<task>`` and a digest of its prompt: another input, another output."""
    user = [m["content"] for m in body["messages"] if m["role"] == "user"]
    said = hashlib.sha256(str(user[-1] if user else "").encode()).hexdigest()[:8]
    return f"{reply_naming_the_task(body)} ({said})"


@pytest.fixture
def stub() -> Iterator[OpenAIStub]:
    with OpenAIStub(reply=reply_to_the_prompt) as server:
        yield server


def memoized(name: str, namespace: str = "default", **inputs: str) -> dict[str, Any]:
    document = workflow(name, [dict(task) for task in TASKS], cache={"maxAge": "1h"})
    document["metadata"]["namespace"] = namespace
    document["spec"]["inputs"] = {**INPUTS, **inputs}
    return document


def asked(stub: OpenAIStub) -> list[str]:
    """The tasks that sent the model a request, in order."""
    marks = []
    for request in stub.chat_requests:
        user = [m["content"] for m in (request.body or {})["messages"] if m["role"] == "user"]
        found = TASK_MARK.search(str(user[-1])) if user else None
        marks.append(found.group(1) if found else "?")
    return marks


def run_to_the_end(troupe: Troupe, name: str) -> dict[str, Any]:
    status = troupe.wait_for_phase(name, "Succeeded", "Failed", timeout=90)
    assert status["phase"] == "Succeeded", status.get("message")
    return status


def wait_for_entries(controller: Controller, namespace: str, count: int) -> None:
    """The operator knows the entries the pods wrote (its index), before the next run."""

    def known() -> bool:
        index = controller.cache_index
        return index is not None and len(entries_in(index, namespace)) >= count

    wait_for(known, timeout=30, interval=0.05, what=f"{count} cache entries in {namespace}")


def test_the_same_workflow_run_twice_is_served_from_the_cache_the_second_time(
    troupe: Troupe, stub: OpenAIStub, kubeconfig: pathlib.Path
) -> None:
    troupe.apply(agent("worker", stub.base_url), memoized("first"))
    with troupe.operator() as controller:
        first = run_to_the_end(troupe, "first")
        assert sorted(asked(stub)) == ["research", "style", "write"]
        wait_for_entries(controller, "default", 3)
        troupe.apply(memoized("second"))
        second = run_to_the_end(troupe, "second")
    assert len(stub.chat_requests) == 3, "the second run asked the model"
    assert troupe.jobs("second") == []
    assert second["usage"]["totalTokens"] == 0 and second["progress"] == "3/3"
    for name, task in second["tasks"].items():
        assert task["reason"] == "Cached", task
        assert task["cached"]["entry"] == task["output"]["configMap"]
        assert task["preview"] == first["tasks"][name]["preview"]
        assert task["preview"].startswith(f"output-of-{name} (")
        assert task["digest"] == first["tasks"][name]["digest"]
    assert Counter(troupe.event_reasons("second"))["TaskCached"] == 3
    entries = troupe.core.list_namespaced_config_map("default", label_selector=CACHE_KEY_LABEL)
    assert len(entries.items) == 3
    assert all(not item.metadata.owner_references for item in entries.items), "outlives its run"
    printed = troupe_cli(kubeconfig, "output", "second", "write", "-n", "default")
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.strip() == first["tasks"]["write"]["preview"]


def test_changing_one_input_reruns_exactly_the_tasks_downstream_of_it(
    troupe: Troupe, stub: OpenAIStub, kube_api_as: ClientAs
) -> None:
    troupe.apply(agent("worker", stub.base_url), memoized("before"))
    with troupe.operator() as controller:
        run_to_the_end(troupe, "before")
        wait_for_entries(controller, "default", 3)
        troupe.apply(memoized("after", tone="lyrical"))
        after = run_to_the_end(troupe, "after")
    assert asked(stub)[3:] == ["style", "write"]
    assert after["tasks"]["research"]["reason"] == "Cached"
    assert "cached" not in after["tasks"]["write"]
    # write read research's cached output with its run's identity: the Role grants exactly it.
    identity = troupe.run("after").task_identity()
    core = kubernetes.client.CoreV1Api(kube_api_as("default", identity))
    research = after["tasks"]["research"]["cached"]["entry"]
    assert core.read_namespaced_config_map(research, "default").data["output"]
    others = troupe.core.list_namespaced_config_map("default", label_selector=CACHE_KEY_LABEL)
    foreign = [i.metadata.name for i in others.items if i.metadata.name != research]
    with pytest.raises(kubernetes.client.ApiException) as refused:
        core.read_namespaced_config_map(foreign[0], "default")
    assert refused.value.status == 403


def test_an_output_cached_in_one_namespace_is_never_served_in_another(
    troupe: Troupe, stub: OpenAIStub, emulator: EmulatedCluster
) -> None:
    emulator.create_namespace("team-b")
    other = agent("worker", stub.base_url)
    other["metadata"]["namespace"] = "team-b"
    troupe.apply(agent("worker", stub.base_url), memoized("here"))
    troupe.custom.create_namespaced_custom_object(GROUP, VERSION, "team-b", "agents", other)
    with troupe.operator() as controller:
        run_to_the_end(troupe, "here")
        wait_for_entries(controller, "default", 3)
        troupe.custom.create_namespaced_custom_object(
            GROUP, VERSION, "team-b", "workflows", memoized("there", "team-b")
        )

        def finished() -> dict[str, Any] | None:
            body = troupe.custom.get_namespaced_custom_object(
                GROUP, VERSION, "team-b", "workflows", "there"
            )
            status: dict[str, Any] = body.get("status") or {}
            return status if status.get("phase") in ("Succeeded", "Failed") else None

        there = wait_for(finished, timeout=90, interval=0.1, what="there to finish")
    assert there["phase"] == "Succeeded", there.get("message")
    assert sorted(asked(stub)[3:]) == ["research", "style", "write"]
    assert all("cached" not in task for task in there["tasks"].values())
    assert there["usage"]["totalTokens"] > 0
