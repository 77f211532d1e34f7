"""A Workflow in a namespace no Tenant owns, under each ``TROUPE_UNTENANTED_NAMESPACES``."""

from __future__ import annotations

from typing import Any

import kubernetes

from tests.integration.test_tenants import LABEL, create, tenant, wait_ready
from tests.integration.troupe_driver import GROUP, VERSION, Troupe, agent, reply_naming_the_task
from tests.integration.troupe_driver import workflow as workflow_body
from tests.support.emulator import EmulatedCluster
from tests.support.openai_stub import OpenAIStub
from tests.support.waiting import wait_for
from troupe_operator.controller.config import UntenantedNamespaces

WAIT = 30.0
WHERE = "solo"
Body = dict[str, Any]


def start_run(troupe: Troupe, stub: OpenAIStub) -> None:
    for body, plural in (
        (agent("worker", stub.base_url), "agents"),
        (workflow_body("lonely", [{"name": "only"}]), "workflows"),
    ):
        body["metadata"]["namespace"] = WHERE
        troupe.custom.create_namespaced_custom_object(GROUP, VERSION, WHERE, plural, body)


def status(troupe: Troupe) -> Body:
    body = troupe.custom.get_namespaced_custom_object(GROUP, VERSION, WHERE, "workflows", "lonely")
    found: Body = body.get("status") or {}
    return found


def wait_phase(troupe: Troupe, phase: str) -> Body:
    return wait_for(
        lambda: (found := status(troupe)).get("phase") == phase and found,
        timeout=WAIT,
        interval=0.1,
        what=f"the Workflow {phase}",
    )


def test_refused_outside_a_tenant_then_run_once_a_tenant_adopts_the_namespace(
    troupe: Troupe, emulator: EmulatedCluster
) -> None:
    emulator.create_namespace(WHERE)
    with (
        OpenAIStub(reply=reply_naming_the_task) as stub,
        troupe.operator(untenanted_namespaces=UntenantedNamespaces.REFUSE),
    ):
        start_run(troupe, stub)

        def refused() -> Body | None:
            conditions = {c["type"]: c for c in status(troupe).get("conditions") or ()}
            admitted = conditions.get("Admitted") or {}
            return admitted if admitted.get("status") == "False" else None

        admitted = wait_for(refused, timeout=WAIT, interval=0.1, what="the Workflow refused")
        assert admitted["reason"] == "NamespaceNotTenanted"
        assert admitted["message"] == (
            f"namespace {WHERE} is not owned by any Tenant; this installation refuses "
            "Workflows outside Tenants (TROUPE_UNTENANTED_NAMESPACES=Refuse)"
        )
        assert status(troupe)["phase"] == "Pending"
        events = troupe.core.list_namespaced_event(WHERE).items
        assert [
            (e.type, e.involved_object.name) for e in events if e.reason == admitted["reason"]
        ] == [("Warning", "lonely")]
        assert kubernetes.client.BatchV1Api(troupe.api).list_namespaced_job(WHERE).items == []

        # Adopted as it is: labelled for the Tenant, which then lists it.
        troupe.core.patch_namespace(WHERE, {"metadata": {"labels": {LABEL: "team-a"}}})
        create(troupe, tenant("team-a", [WHERE]))
        wait_ready(troupe, "team-a")
        final = wait_phase(troupe, "Succeeded")
    assert {c["type"]: c["status"] for c in final["conditions"]}["Admitted"] == "True"


def test_allowed_outside_a_tenant_where_the_installation_says_so(
    troupe: Troupe, emulator: EmulatedCluster
) -> None:
    emulator.create_namespace(WHERE)
    with (
        OpenAIStub(reply=reply_naming_the_task) as stub,
        troupe.operator(untenanted_namespaces=UntenantedNamespaces.ALLOW),
    ):
        start_run(troupe, stub)
        final = wait_phase(troupe, "Succeeded")
    assert "Admitted" not in {c["type"] for c in final["conditions"]}
