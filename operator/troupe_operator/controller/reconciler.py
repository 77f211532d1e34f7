"""One reconcile of one Workflow: observe, ask the core, execute, write status.

Reconciles of the same Workflow never overlap (``Triggers`` runs one at a
time per Workflow), and each starts from a fresh read of the Workflow, so a
stale watch event can never roll its status back. Every action is
idempotent: AlreadyExists on create and NotFound on delete are success, which
is what makes a restarted operator adopt the Jobs it finds instead of
duplicating them.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from troupe_operator.api import (
    API_VERSION,
    WorkflowPhase,
    WorkflowSpec,
    WorkflowStatus,
)
from troupe_operator.controller import children, observe
from troupe_operator.controller.cluster import ClusterIndex, WorkflowKey
from troupe_operator.controller.config import OperatorConfig
from troupe_operator.controller.identity import ensure_task_identity
from troupe_operator.controller.kube import Body, Kube, path
from troupe_operator.controller.outputs import LazyOutputs, OutputCache
from troupe_operator.manifests import schema_messages
from troupe_operator.workflow.actions import (
    CreateTask,
    Decision,
    DeleteJob,
    Event,
    EventType,
    RecordSpec,
)
from troupe_operator.workflow.core import reconcile
from troupe_operator.workflow.naming import (
    output_config_map_name,
    owner_reference,
    spec_config_map_name,
    workflow_labels,
)
from troupe_operator.workflow.observation import JobState, Observation, TaskOutput
from troupe_operator.workflow.summary import brief, status_patch
from troupe_operator.workflow.verdict import Verdict, verdict_conditions

logger = logging.getLogger(__name__)

PLURAL = "workflows"
SPEC_KEY = "spec.json"
Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class WorkflowReconciler:
    """Drives Workflows through the pure core against a Kubernetes API."""

    def __init__(
        self,
        api: client.ApiClient,
        config: OperatorConfig,
        index: ClusterIndex | None = None,
        clock: Clock = _utcnow,
    ) -> None:
        self.api = api
        self.config = config
        self.index = index or ClusterIndex()
        self.clock = clock
        self.kube = Kube(api)
        self._outputs = OutputCache()
        self._recorded_specs: dict[str, WorkflowSpec] = {}
        self._failure_pods: dict[WorkflowKey, dict[str, list[Body]]] = defaultdict(dict)
        self._identities: set[str] = set()

    # -- entry points ---------------------------------------------------------

    def reconcile(self, key: WorkflowKey) -> float | None:
        """Reconcile one Workflow; seconds until it wants to be looked at again.

        An unfinished run is looked at again at least every ``resync_seconds``
        even when no event comes: a missed watch event cannot leave it stuck.
        Callers must not reconcile one Workflow twice at once (``Triggers``
        guarantees it).
        """
        workflow = self._read_workflow(key)
        if workflow is None:
            self.forget(key)
            return None
        return self._reconcile(key, workflow)

    def forget(self, key: WorkflowKey) -> None:
        """Drop what is kept in memory for a deleted Workflow."""
        self.index.forget_workflow(key)
        self._release(key)

    def _release(self, key: WorkflowKey) -> None:
        """Drop the outputs and pods read for a Workflow that needs them no more."""
        self._outputs.forget(key)
        self._failure_pods.pop(key, None)

    # -- observing ------------------------------------------------------------

    def _read_workflow(self, key: WorkflowKey) -> Body | None:
        namespace, name = key
        return self.kube.get(path(API_VERSION, PLURAL, namespace, name))

    def _observe(self, key: WorkflowKey, body: Body, spec: WorkflowSpec) -> Observation:
        namespace, name = key
        metadata = body["metadata"]
        jobs = []
        succeeded: dict[str, str] = {}
        for job in self.index.jobs(key):
            pods = self._pods_of_failed(key, job)
            observed = observe.observed_job(job, pods)
            if observed is None:
                continue
            jobs.append(observed)
            if observed.state is JobState.SUCCEEDED:
                succeeded[observed.task] = output_config_map_name(
                    name, observed.task, observed.attempt
                )
        return Observation(
            namespace=namespace,
            name=name,
            uid=metadata["uid"],
            generation=int(metadata.get("generation") or 1),
            spec=spec,
            status=WorkflowStatus.model_validate(body.get("status") or {}),
            now=self.clock(),
            jobs=jobs,
            outputs=LazyOutputs(key, succeeded, self._outputs, self._load_output(namespace)),
            agents=self.index.agents(namespace, lambda: self._list_agents(namespace)),
            recorded_spec=self._recorded_spec(namespace, name, metadata["uid"]),
        )

    def _pods_of_failed(self, key: WorkflowKey, job: Mapping[str, Any]) -> list[Body]:
        """A failed Job's pods, read once: they hold the task's termination message."""
        if not observe.is_finished(job) or (job.get("status") or {}).get("succeeded"):
            return []
        name, known = job["metadata"]["name"], self._failure_pods[key]
        if name not in known:
            known[name] = self.kube.list(
                path("v1", "pods", key[0]), label_selector=f"job-name={name}"
            )
        return known[name]

    def _load_output(self, namespace: str) -> Callable[[str], TaskOutput | None]:
        def load(config_map: str) -> TaskOutput | None:
            body = self.kube.get(path("v1", "configmaps", namespace, config_map))
            return None if body is None else observe.task_output(body)

        return load

    def _list_agents(self, namespace: str) -> list[Body]:
        return self.kube.list(path(API_VERSION, "agents", namespace))

    def _recorded_spec(self, namespace: str, name: str, uid: str) -> WorkflowSpec | None:
        if uid in self._recorded_specs:
            return self._recorded_specs[uid]
        config_map = self.kube.get(path("v1", "configmaps", namespace, spec_config_map_name(name)))
        if config_map is None:
            return None
        owners = config_map["metadata"].get("ownerReferences") or []
        if not any(owner.get("uid") == uid for owner in owners):
            return None  # left over from an earlier Workflow of the same name
        spec = WorkflowSpec.model_validate_json((config_map.get("data") or {})[SPEC_KEY])
        self._recorded_specs[uid] = spec
        return spec

    # -- deciding and acting --------------------------------------------------

    def _reconcile(self, key: WorkflowKey, body: Body) -> float | None:
        try:
            spec = WorkflowSpec.model_validate(body.get("spec") or {})
        except ValidationError as error:
            status = _invalid_status(body, error)
            if (body.get("status") or {}).get("message") != status.message:
                self._post_event(
                    body, Event(EventType.WARNING, "InvalidSpec", status.message or "")
                )
            self._write_status(key, body, status)
            return None
        decision = reconcile(self._observe(key, body, spec))
        self._execute(key, body, decision)
        self._write_status(key, body, decision.status)
        if decision.requeue_after is not None:
            return decision.requeue_after
        if decision.status.phase in (WorkflowPhase.SUCCEEDED, WorkflowPhase.FAILED):
            self._release(key)
            return None
        return self.config.resync_seconds

    def _execute(self, key: WorkflowKey, body: Body, decision: Decision) -> None:
        namespace, _ = key
        uid = body["metadata"]["uid"]
        for action in decision.actions:
            if isinstance(action, RecordSpec):
                self._record_spec(key, uid, action)
            elif isinstance(action, CreateTask):
                self._create_task(key, uid, action)
            elif isinstance(action, DeleteJob):
                self._delete_job(namespace, action)
            elif isinstance(action, Event):
                self._post_event(body, action)

    def _record_spec(self, key: WorkflowKey, uid: str, action: RecordSpec) -> None:
        namespace, name = key
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": action.config_map,
                "namespace": namespace,
                "labels": workflow_labels(name),
                "ownerReferences": [owner_reference(name, uid)],
            },
            "immutable": True,
            "data": {SPEC_KEY: action.spec.model_dump_json(by_alias=True, exclude_none=True)},
        }
        self.kube.create(path("v1", "configmaps", namespace), body)
        self._recorded_specs.setdefault(uid, action.spec)

    def _create_task(self, key: WorkflowKey, uid: str, action: CreateTask) -> None:
        namespace, _ = key
        if namespace not in self._identities:
            ensure_task_identity(self.kube, namespace, self.config.task_service_account)
            self._identities.add(namespace)
        config_map = children.input_config_map(action, uid)
        self.kube.create(path("v1", "configmaps", namespace), config_map)
        created = self.kube.create(
            path("batch/v1", "jobs", namespace), children.task_job(action, uid, self.config)
        )
        if created is not None:
            self.index.job_created(created)

    def _delete_job(self, namespace: str, action: DeleteJob) -> None:
        self.kube.delete(path("batch/v1", "jobs", namespace, action.name))

    def _post_event(self, body: Body, action: Event) -> None:
        metadata = body["metadata"]
        now = self.clock().isoformat()
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "generateName": f"{metadata['name']}.",
                "namespace": metadata["namespace"],
            },
            "involvedObject": {
                "apiVersion": API_VERSION,
                "kind": "Workflow",
                "name": metadata["name"],
                "namespace": metadata["namespace"],
                "uid": metadata["uid"],
            },
            "type": action.type.value,
            "reason": action.reason,
            "message": action.message,
            "source": {"component": "troupe-operator"},
            "reportingComponent": "troupe.dev/operator",
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self.kube.create(path("v1", "events", metadata["namespace"]), event)
        except ApiException as error:  # an Event is best effort, never a reason to fail
            logger.warning("could not post event %s: %s", action.reason, error.reason)

    def _write_status(self, key: WorkflowKey, body: Body, status: WorkflowStatus) -> None:
        namespace, name = key
        patch = status_patch(body.get("status") or {}, status.to_wire())
        if not patch:
            return
        self.kube.merge_patch(
            path(API_VERSION, PLURAL, namespace, name) + "/status", {"status": patch}
        )


def _invalid_status(body: Body, error: ValidationError) -> WorkflowStatus:
    """A spec the models refuse (the CRD schema should have stopped it) is phase Error."""
    message = brief("invalid spec: " + "; ".join(schema_messages(error)))
    generation = int(body["metadata"].get("generation") or 1)
    previous = WorkflowStatus.model_validate(body.get("status") or {})
    verdict = Verdict(WorkflowPhase.ERROR, "InvalidSpec", message)
    return WorkflowStatus(
        phase=WorkflowPhase.ERROR,
        message=message,
        observed_generation=generation,
        conditions=verdict_conditions(previous.conditions, verdict, _utcnow(), generation),
    )
