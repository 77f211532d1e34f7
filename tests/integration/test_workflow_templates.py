"""WorkflowTemplates and inputs from ConfigMaps and Secrets, end to end with the real operator.

A Workflow that gives only a ``workflowTemplateRef`` and inputs runs the template's tasks (the
task pods are the agent runtime's, calling the OpenAI stub); the template and the ConfigMap
are edited, and the template deleted, while the run is under way, and the run finishes with
the tasks and prompts it started with (the stub's recorded prompts say so). A Workflow whose
template or ConfigMap does not exist yet waits, Pending with a reason and a Warning Event,
and starts once it does; one that gives an input its template does not have is an Error,
until the template is fixed. Editing the Workflow's own inputs mid-run is refused
(``SpecChangeRefused``) and the run goes on with what it started with.
A Secret input reaches the model and nothing else: not status, not Events, not the recorded
spec, not the Job (which names the Secret).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest

from tests.integration.test_workflow_controller import prompts_by_task
from tests.integration.troupe_driver import GROUP, VERSION, Troupe, agent, reply_naming_the_task
from tests.support.openai_stub import Fault, OpenAIStub
from tests.support.waiting import wait_for

SECRET_VALUE = "orchid-7f3a-codename"


@pytest.fixture
def stub() -> Iterator[OpenAIStub]:
    with OpenAIStub(reply=reply_naming_the_task) as server:
        yield server


def template(name: str, version: str, *extra: dict[str, Any]) -> dict[str, Any]:
    tasks = [
        {
            "name": "research",
            "agent": "worker",
            "prompt": f"TASK=research {version} on {{{{ inputs.topic }}}}, "
            "{{ inputs.tone }}, for {{ inputs.codename }}",
        },
        {
            "name": "write",
            "agent": "worker",
            "dependsOn": ["research"],
            "prompt": f"TASK=write {version} {{{{ tasks.research.output }}}}",
        },
        *extra,
    ]
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "WorkflowTemplate",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "inputs": {"topic": "tea", "tone": "warm", "codename": "none"},
            "retryBackoffSeconds": 0,
            "tasks": tasks,
        },
    }


def templated(name: str, template_name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Workflow",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"workflowTemplateRef": {"name": template_name}, **spec},
    }


def config_map(name: str, **data: str) -> kubernetes.client.V1ConfigMap:
    return kubernetes.client.V1ConfigMap(
        metadata=kubernetes.client.V1ObjectMeta(name=name), data=data
    )


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in status.get("conditions") or () if c["type"] == kind)


def test_a_template_ref_runs_the_template_s_tasks_pinned_at_start(
    troupe: Troupe, stub: OpenAIStub
) -> None:
    release = threading.Event()
    stub.inject(Fault.held(release))  # the first task's call waits while the test edits
    troupe.core.create_namespaced_config_map("default", config_map("style", tone="dry"))
    troupe.core.create_namespaced_secret(
        "default",
        kubernetes.client.V1Secret(
            metadata=kubernetes.client.V1ObjectMeta(name="project"),
            string_data={"codename": SECRET_VALUE},
        ),
    )
    troupe.apply(
        agent("worker", stub.base_url),
        template("brief", "v1"),
        templated(
            "coffee",
            "brief",
            inputs={"topic": "coffee"},
            inputsFrom=[
                {"name": "tone", "configMapKeyRef": {"name": "style", "key": "tone"}},
                {"name": "codename", "secretKeyRef": {"name": "project", "key": "codename"}},
            ],
        ),
    )
    with troupe.operator():
        started = wait_for(
            lambda: stub.chat_requests and troupe.status("coffee").get("resolvedFrom"),
            timeout=60,
            what="the first task's model call, and the run's record of its template",
        )
        # Mid-run: the template gets other prompts and a third task, the ConfigMap another
        # tone; then the template is deleted. None of it may reach the run.
        troupe.custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            "default",
            "workflowtemplates",
            "brief",
            {
                "spec": template(
                    "brief", "v2", {"name": "extra", "agent": "worker", "prompt": "TASK=extra"}
                )["spec"]
            },
        )
        troupe.core.patch_namespaced_config_map("style", "default", {"data": {"tone": "wry"}})
        troupe.custom.delete_namespaced_custom_object(
            GROUP, VERSION, "default", "workflowtemplates", "brief"
        )
        release.set()
        status = troupe.wait_for_phase("coffee", "Succeeded", "Failed", "Error", timeout=90)

    assert status["phase"] == "Succeeded", status.get("message")
    assert set(status["tasks"]) == {"research", "write"} and status["progress"] == "2/2"
    prompts = prompts_by_task(stub)
    assert set(prompts) == {"research", "write"}
    assert prompts["research"] == f"TASK=research v1 on coffee, dry, for {SECRET_VALUE}"
    assert prompts["write"].startswith("TASK=write v1 output-of-research")
    assert started["workflowTemplate"]["name"] == "brief"
    assert started["workflowTemplate"]["generation"] == 1
    assert status["resolvedFrom"] == started
    assert "SpecChangeRefused" not in {c["type"] for c in status["conditions"]}

    # The Secret's value reached the model only: the run names the Secret, never holds it.
    workflow = troupe.workflow("coffee")
    recorded = troupe.config_maps("coffee")[troupe.run("coffee").spec_config_map()]["spec.json"]
    events = troupe.core.list_namespaced_event("default").items
    assert SECRET_VALUE not in str(workflow) + recorded + str([e.message for e in events])
    assert '"tone":"dry"' in recorded and '"secretKeyRef":{"name":"project"' in recorded
    job = troupe.jobs("coffee")[0]
    env = {e.name: e for e in job.spec.template.spec.containers[0].env}
    assert env["TROUPE_SECRET_INPUT_0"].value_from.secret_key_ref.name == "project"
    assert env["TROUPE_SECRET_INPUT_0"].value is None


def test_a_run_waits_for_its_template_and_config_map_then_starts(
    troupe: Troupe, stub: OpenAIStub
) -> None:
    cm_input = [{"name": "tone", "configMapKeyRef": {"name": "later-style", "key": "tone"}}]
    troupe.apply(
        agent("worker", stub.base_url),
        templated("needs-template", "later"),
        templated("needs-config", "brief", inputsFrom=cm_input),
        templated("wrong-input", "brief", inputs={"colour": "red"}),
        template("brief", "v1"),
    )
    with troupe.operator():
        waiting = {
            name: wait_for(
                lambda name=name: (
                    (s := troupe.status(name)).get("phase") == "Pending" and s.get("message") and s
                ),
                timeout=60,
                what=f"{name} to wait",
            )
            for name in ("needs-template", "needs-config")
        }
        error = troupe.wait_for_phase("wrong-input", "Error", timeout=60)
        for name, reason in (
            ("needs-template", "WorkflowTemplateNotFound"),
            ("needs-config", "InputSourceNotFound"),
        ):
            ready = condition(waiting[name], "Ready")
            assert (ready["status"], ready["reason"]) == ("False", reason)
            assert troupe.event_reasons(name) == [reason]
            assert not troupe.jobs(name)
        assert waiting["needs-template"]["message"] == (
            "waiting: WorkflowTemplate 'later' does not exist (the run starts once it does)"
        )
        assert (
            "ConfigMap 'later-style' (input 'tone') does not exist"
            in waiting["needs-config"]["message"]
        )

        troupe.apply(template("later", "v1"))
        troupe.core.create_namespaced_config_map("default", config_map("later-style", tone="dry"))
        for name in ("needs-template", "needs-config"):
            status = troupe.wait_for_phase(name, "Succeeded", "Failed", timeout=90)
            assert status["phase"] == "Succeeded", status.get("message")
        assert troupe.status("wrong-input")["phase"] == "Error"
        assert error["message"] == (
            "invalid spec: input 'colour' is not an input of WorkflowTemplate 'brief' "
            "(its inputs: codename, tone, topic)"
        )
        assert condition(error, "Failed")["reason"] == "InvalidSpec"
        assert troupe.event_reasons("wrong-input") == ["InvalidSpec"]

        # Fixing the template (it declares the input now) starts the run in Error.
        fixed = template("brief", "v1")["spec"]
        fixed["inputs"]["colour"] = "blue"
        troupe.custom.patch_namespaced_custom_object(
            GROUP, VERSION, "default", "workflowtemplates", "brief", {"spec": fixed}
        )
        status = troupe.wait_for_phase("wrong-input", "Succeeded", "Failed", timeout=90)
        assert status["phase"] == "Succeeded", status.get("message")


def test_editing_the_workflow_s_own_inputs_mid_run_is_refused(
    troupe: Troupe, stub: OpenAIStub
) -> None:
    release = threading.Event()
    stub.inject(Fault.held(release))
    troupe.apply(
        agent("worker", stub.base_url),
        template("brief", "v1"),
        templated("tea", "brief", inputs={"topic": "green tea"}),
    )
    with troupe.operator():
        wait_for(
            lambda: stub.chat_requests and troupe.status("tea").get("resolvedFrom"),
            timeout=60,
            what="the first task's model call",
        )
        troupe.custom.patch_namespaced_custom_object(
            GROUP, VERSION, "default", "workflows", "tea", {"spec": {"inputs": {"topic": "oolong"}}}
        )
        wait_for(
            lambda: any(
                c["type"] == "SpecChangeRefused" for c in troupe.status("tea").get("conditions", [])
            ),
            timeout=60,
            what="the edit refused",
        )
        release.set()
        status = troupe.wait_for_phase("tea", "Succeeded", "Failed", timeout=90)
    assert status["phase"] == "Succeeded", status.get("message")
    prompts = prompts_by_task(stub)
    assert prompts["research"].startswith("TASK=research v1 on green tea")
    assert "SpecChangeRefused" in troupe.event_reasons("tea")
