"""The kopf handlers: watch Workflows, their Jobs and Agents; reconcile on change.

Only event handlers are used. kopf therefore never writes its diff-base
annotation (capped at 262,144 characters, which long prompts could exceed)
nor adds finalizers: deleting a Workflow is never blocked by the operator,
and ownerReferences take its Jobs and ConfigMaps with it.
"""

from __future__ import annotations

from typing import Any

import kopf

from troupe_operator.api import GROUP, VERSION
from troupe_operator.controller.reconciler import WorkflowReconciler
from troupe_operator.controller.triggers import Triggers
from troupe_operator.workflow.naming import LABEL_WORKFLOW


def register(registry: kopf.OperatorRegistry, reconciler: WorkflowReconciler) -> Triggers:
    """Add the Workflow controller's handlers to ``registry``."""
    triggers = Triggers(reconciler.reconcile)

    @kopf.on.event(GROUP, VERSION, "workflows", registry=registry)
    async def workflow_event(event: kopf.RawEvent, meta: kopf.Meta, **_: Any) -> None:
        key = (str(meta.namespace), str(meta.name))
        if event["type"] == "DELETED":
            triggers.cancel(key)
            reconciler.forget(key)
            return
        await triggers.trigger(key)

    @kopf.on.event("batch", "v1", "jobs", labels={LABEL_WORKFLOW: kopf.PRESENT}, registry=registry)
    async def job_event(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
        deleted = event["type"] == "DELETED"
        key = reconciler.index.job_changed(dict(body), deleted=deleted)
        if key is not None:
            await triggers.trigger(key)

    @kopf.on.event(GROUP, VERSION, "agents", registry=registry)
    def agent_event(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
        reconciler.index.agent_changed(dict(body), deleted=event["type"] == "DELETED")

    @kopf.on.cleanup(registry=registry)
    def stop_requeues(**_: Any) -> None:
        triggers.close()

    return triggers
