"""The Tenant controller on kopf: a Tenant's namespaces, their policies and its status, kept.

The rules are in the pure core (``troupe_operator.tenants``); this shell
observes, asks it, and executes. kopf's event handlers only put a Tenant's
name on a work queue; workers reconcile it: read the Tenant, the namespaces
labelled for it (by label) and those its spec names (by name); in each that
may be its own, the children by name, the Workflows and task Jobs (from the
watch cache), and, in an unlabelled one, the Agents; then add the finalizer
(first), delete, create and replace what the core says, write the status
(only when it changed) and post the Events.

What wakes a Tenant: its own events; an event on a child labelled
``troupe.dev/tenant`` (a child deleted or edited is written back at once:
drift repair); an event on a namespace labelled for it or listed in its
spec (kopf indexes the Tenants by the namespaces they list), so a namespace
deleted, relabelled, or freed by another Tenant is seen at once; and, for
its usage counts, an event on a Workflow or a task Job in a namespace it
lists, coalesced over ``USAGE_DELAY`` seconds so a busy namespace costs one
reconcile per second, not one per Job update. A Tenant that is not Ready is
looked at again every ``resync_seconds`` (a refused namespace may have been
emptied, which no watched event reports).

Every API call is bounded (``Kube``). Transient failures are retried with
backoff (``Workers``); a write refused for good (403, 422) becomes the
namespace's ``Refused`` state, the ``NamespacesReady`` condition and a
Warning Event.

Deletion is guarded by the finalizer ``troupe.dev/tenant-cleanup``, managed
here rather than by kopf (whose finalizers come with its change handlers
and diff-base annotation, which these workers do not use): added by a
merge patch carrying the Tenant's ``resourceVersion`` before anything is
created, and removed the same way once the cleanup is done. An operator
that is down or uninstalled leaves a deleted Tenant waiting; removing the
finalizer by hand lets it go (garbage collection then takes its children
through their ownerReferences; the namespaces keep their labels).

Events on a Tenant, which is cluster-scoped, go to the ``default``
namespace, as client-go's recorder puts them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Final

import kopf
from kubernetes.aio import client
from pydantic import ValidationError

from troupe_operator import tenants
from troupe_operator.api import API_VERSION, GROUP, VERSION, TenantSpec, TenantStatus
from troupe_operator.controller.config import OperatorConfig
from troupe_operator.controller.events import EventRecorder
from troupe_operator.controller.kube import MERGE_PATCH, ApiError, Body, Connect, Kube, path
from troupe_operator.controller.workers import Workers
from troupe_operator.manifests import schema_messages
from troupe_operator.tenants import (
    LABEL_TENANT,
    TENANT_ANNOTATION,
    Child,
    Decision,
    Observation,
    ObservedNamespace,
    Target,
    TenantRef,
    TenantSettings,
)
from troupe_operator.workflow import LABEL_WORKFLOW, InvalidSpec

logger = logging.getLogger(__name__)

TenantKey = str
SPECS_INDEX: Final = "tenant_specs"
"""kopf index: a namespace to the Tenants whose spec lists it."""
USAGE_DELAY: Final = 1.0
"""Seconds a Workflow or Job event waits before its Tenant's usage is counted again."""
EVENT_NAMESPACE: Final = "default"
CHILD_RESOURCES: Final = sorted({(child.api_version, child.plural) for child in Child})
TENANTS: Final = f"/apis/{API_VERSION}/tenants"


def _namespace_path(name: str = "") -> str:
    return "/api/v1/namespaces" + (f"/{name}" if name else "")


def _child_path(child: Child, namespace: str, name: str = "") -> str:
    return path(child.api_version, child.plural, namespace, name)


class TenantKube(Kube):
    """The calls the Tenant controller makes, each bounded like every ``Kube`` call."""

    async def read_tenant(self, name: str) -> Body | None:
        return await self._read(f"{TENANTS}/{name}")

    async def patch_tenant_finalizers(
        self, name: str, resource_version: str, finalizers: list[str]
    ) -> Body:
        """Set the finalizers, unless the Tenant changed since ``resource_version`` (409)."""
        patch = {"metadata": {"resourceVersion": resource_version, "finalizers": finalizers}}
        return await self._call("patch", f"{TENANTS}/{name}", patch, content_type=MERGE_PATCH)

    async def patch_tenant_status(self, name: str, status: Body) -> Body:
        return await self._call(
            "patch", f"{TENANTS}/{name}/status", {"status": status}, content_type=MERGE_PATCH
        )

    async def read_namespace(self, name: str) -> Body | None:
        return await self._read(_namespace_path(name))

    async def list_namespaces(self, label_selector: str) -> list[Body]:
        return await self._list(_namespace_path(), label_selector)

    async def create_namespace(self, body: Body) -> None:
        if await self._create(_namespace_path(), body) is None:
            raise ApiError(409, "Conflict", f"namespace {body['metadata']['name']} appeared")

    async def replace_namespace(self, body: Body) -> None:
        await self._call("put", _namespace_path(body["metadata"]["name"]), body)

    async def delete_namespace(self, name: str) -> None:
        try:
            await self._call("delete", _namespace_path(name))
        except ApiError as error:
            if error.status != 404:
                raise

    async def read_child(self, child: Child, namespace: str) -> Body | None:
        return await self._read(_child_path(child, namespace, child.child_name))

    async def create_child(self, child: Child, namespace: str, body: Body) -> None:
        if await self._create(_child_path(child, namespace), body) is None:
            raise ApiError(409, "Conflict", f"{child.kind} {namespace}/{child.child_name} appeared")

    async def replace_child(self, child: Child, namespace: str, body: Body) -> None:
        await self._call("put", _child_path(child, namespace, child.child_name), body)

    async def delete_child(self, child: Child, namespace: str) -> None:
        try:
            await self._call("delete", _child_path(child, namespace, child.child_name))
        except ApiError as error:
            if error.status != 404:
                raise

    async def list_troupe(self, plural: str, namespace: str) -> list[Body]:
        """Workflows or Agents of a namespace, from the API server's watch cache."""
        return await self._list(path(API_VERSION, plural, namespace), "")


class TenantEvents(EventRecorder):
    """Events on a Tenant: cluster-scoped, so recorded in the ``default`` namespace."""

    async def post(self, workflow: Mapping[str, Any], event: Any) -> None:
        metadata = {**workflow["metadata"], "namespace": EVENT_NAMESPACE}
        await super().post({**workflow, "metadata": metadata}, event)

    def _body(self, workflow: Mapping[str, Any], event: Any, name: str, now: str) -> Body:
        body = super()._body(workflow, event, name, now)
        body["involvedObject"]["kind"] = "Tenant"
        del body["involvedObject"]["namespace"]
        return body


def _now() -> datetime:
    return datetime.now(UTC)


def _status_patch(before: TenantStatus, after: TenantStatus) -> Body | None:
    """The merge patch from one status to the other (None: no change); a field gone is null."""
    old = before.model_dump(mode="json", by_alias=True, exclude_none=True)
    new = after.model_dump(mode="json", by_alias=True, exclude_none=True)
    if old == new:
        return None
    return {**{key: None for key in old if key not in new}, **new}


def tenant_of(body: Mapping[str, Any]) -> str | None:
    """The Tenant an object labelled ``troupe.dev/tenant`` belongs to: its owner, else its
    annotation, else the label (a label holds a shortened name)."""
    metadata = body.get("metadata") or {}
    for owner in metadata.get("ownerReferences") or ():
        if owner.get("kind") == "Tenant" and owner.get("apiVersion") == API_VERSION:
            return str(owner["name"])
    annotated = (metadata.get("annotations") or {}).get(TENANT_ANNOTATION)
    label = (metadata.get("labels") or {}).get(LABEL_TENANT)
    return str(annotated or label) if annotated or label else None


class TenantReconciler:
    def __init__(self, kube: TenantKube, config: OperatorConfig) -> None:
        self.kube = kube
        self.config = config
        self.settings = TenantSettings(config.api_server_cidr, config.api_server_ports)
        self.events = TenantEvents(kube, config.reporting_instance, _now)

    async def reconcile(self, name: TenantKey) -> float | None:
        body = await self.kube.read_tenant(name)
        if body is None:
            return None  # its children go with it (ownerReferences); its finalizer kept it
        observation = await self._observe(body)
        decision = tenants.reconcile(observation)
        if decision.finalizers is not None:
            metadata = body["metadata"]
            body = await self.kube.patch_tenant_finalizers(
                name, metadata["resourceVersion"], list(decision.finalizers)
            )
            if tenants.FINALIZER not in decision.finalizers:
                return None  # cleaned up: the Tenant goes
        refusals = await self._execute(decision)
        if refusals:
            decision = tenants.reconcile(replace(observation, refusals=refusals))
        patch = _status_patch(observation.status, decision.status)
        if patch is not None:
            await self.kube.patch_tenant_status(name, patch)
        for event in decision.events:
            await self.events.post(body, event)
        if decision.again:
            return 0.0
        return self.config.resync_seconds if decision.resync else None

    async def _observe(self, body: Body) -> Observation:
        metadata = body["metadata"]
        tenant = TenantRef(metadata["name"], metadata["uid"])
        spec: TenantSpec | InvalidSpec
        try:
            spec = TenantSpec.model_validate(body.get("spec") or {})
        except ValidationError as error:
            spec = InvalidSpec(schema_messages(error))
        try:
            status = TenantStatus.model_validate(body.get("status") or {})
        except ValidationError:
            status = TenantStatus()
        # The spec's namespaces read by name (the watch cache may lag); the label finds
        # those the spec no longer lists, to be released (a stale one fails its write: 409).
        named = [] if isinstance(spec, InvalidSpec) else list(dict.fromkeys(spec.namespaces))
        listed, read = await asyncio.gather(
            self.kube.list_namespaces(f"{LABEL_TENANT}={tenant.label}"),
            asyncio.gather(*(self.kube.read_namespace(name) for name in named)),
        )
        found: dict[str, Body | None] = dict(zip(named, read, strict=True))
        for namespace in listed:
            found.setdefault(namespace["metadata"]["name"], namespace)
        observed = await asyncio.gather(
            *(self._namespace(tenant, name, ns) for name, ns in found.items())
        )
        return Observation(
            tenant=tenant,
            generation=int(metadata.get("generation") or 1),
            spec=spec,
            status=status,
            finalizers=tuple(metadata.get("finalizers") or ()),
            deleting=bool(metadata.get("deletionTimestamp")),
            namespaces=dict(zip(found, observed, strict=True)),
            settings=self.settings,
            now=_now(),
        )

    async def _namespace(
        self, tenant: TenantRef, name: str, body: Body | None
    ) -> ObservedNamespace:
        """A namespace, and what is in it when it may be the Tenant's."""
        if body is None:
            return ObservedNamespace(None)
        owner = (body["metadata"].get("labels") or {}).get(LABEL_TENANT)
        if owner not in (None, tenant.label):
            return ObservedNamespace(body)
        children, workflows, jobs = await asyncio.gather(
            asyncio.gather(*(self.kube.read_child(child, name) for child in Child)),
            self.kube.list_troupe("workflows", name),
            self.kube.list_jobs(name, LABEL_WORKFLOW),
        )
        agents = await self.kube.list_troupe("agents", name) if owner is None else []
        return ObservedNamespace(
            body,
            children={child: found for child, found in zip(Child, children, strict=True) if found},
            workflows=workflows,
            agents=len(agents),
            jobs=jobs,
        )

    async def _execute(self, decision: Decision) -> dict[Target, str]:
        """Deletes, then writes in order; the writes refused for good, with the server's words."""
        for namespace, child in decision.deletes:
            if child is None:
                await self.kube.delete_namespace(namespace)
            else:
                await self.kube.delete_child(child, namespace)
        refused: dict[Target, str] = {}
        for write in decision.writes:
            if (write.namespace, None) in refused:
                continue  # its namespace was refused: its children would be too
            try:
                await self._write(write)
            except ApiError as error:
                if error.transient:
                    raise
                refused[(write.namespace, write.child)] = error.message or str(error)
        return refused

    async def _write(self, write: tenants.Write) -> None:
        if write.child is None:
            if write.create:
                await self.kube.create_namespace(write.body)
            else:
                await self.kube.replace_namespace(write.body)
        elif write.create:
            await self.kube.create_child(write.child, write.namespace, write.body)
        else:
            await self.kube.replace_child(write.child, write.namespace, write.body)


def register(
    registry: kopf.OperatorRegistry,
    load_config: Callable[[], OperatorConfig],
    connect: Connect,
) -> Workers[TenantKey]:
    """Add the Tenant controller's handlers to ``registry``."""
    workers: Workers[TenantKey] = Workers("tenant")
    closing: list[client.ApiClient] = []
    labelled = {LABEL_TENANT: kopf.PRESENT}

    def wake(body: Mapping[str, Any]) -> None:
        name = tenant_of(body)
        if name:
            workers.enqueue(name)

    def listing(namespace: str | None, indices: Mapping[str, Any]) -> list[str]:
        specs: kopf.Index[str | None, str] = indices[SPECS_INDEX]
        return list(specs.get(namespace, ()))

    @kopf.on.startup(registry=registry)
    async def start_tenants(**_: Any) -> None:
        config = load_config()
        api = await connect()
        closing.append(api)
        workers.start(
            TenantReconciler(TenantKube(api, config.api_timeout_seconds), config).reconcile,
            config.workers,
        )

    @kopf.on.cleanup(registry=registry)
    async def stop_tenants(**_: Any) -> None:
        await workers.stop()
        for api in closing:
            await api.close()  # type: ignore[no-untyped-call]  # untyped upstream

    @kopf.index(GROUP, VERSION, "tenants", id=SPECS_INDEX, registry=registry)
    async def index_tenant_spec(spec: kopf.Spec, name: str, **_: Any) -> Any:
        namespaces = spec.get("namespaces")
        listed = namespaces if isinstance(namespaces, list) else []
        return {namespace: name for namespace in listed if isinstance(namespace, str)}

    @kopf.on.event(GROUP, VERSION, "tenants", id="tenant", registry=registry)
    async def tenant_event(name: str, **_: Any) -> None:
        workers.enqueue(name)

    @kopf.on.event("", "v1", "namespaces", id="tenant-namespace", registry=registry)
    async def tenant_namespace_event(body: kopf.Body, name: str, **indices: Any) -> None:
        """Its Tenant (by label), and every Tenant that lists it (created, freed, relabelled)."""
        wake(body)
        for tenant in listing(name, indices):
            workers.enqueue(tenant)

    for api_version, plural in CHILD_RESOURCES:
        group, _, version = api_version.rpartition("/")

        @kopf.on.event(
            group, version, plural, id=f"tenant-{plural}", labels=labelled, registry=registry
        )
        async def tenant_child_event(body: kopf.Body, **_: Any) -> None:
            wake(body)

    @kopf.on.event(GROUP, VERSION, "workflows", id="tenant-usage-workflows", registry=registry)
    async def tenant_workflow_event(namespace: str | None, **indices: Any) -> None:
        for tenant in listing(namespace, indices):
            workers.queue.add_after(tenant, USAGE_DELAY)

    @kopf.on.event(
        "batch",
        "v1",
        "jobs",
        id="tenant-usage-jobs",
        labels={LABEL_WORKFLOW: kopf.PRESENT},
        registry=registry,
    )
    async def tenant_job_event(namespace: str | None, **indices: Any) -> None:
        for tenant in listing(namespace, indices):
            workers.queue.add_after(tenant, USAGE_DELAY)

    return workers
