"""The Workflow controller on kopf: indexes, event handlers, and the workers behind them.

kopf does what it does well: it lists and watches Workflows, their Jobs,
Agents and WorkflowTemplates, keeps the Jobs, Agents and templates in its
indexes (``@kopf.index``), and calls
no handler before those indexes are filled, so nothing is decided about a
run before its Jobs are known. Its event handlers only note what changed and
put the Workflow's key on the work queue; the workers reconcile. Only event
handlers and indexes are used: kopf never writes its diff-base annotation
(capped at 262,144 characters, which long prompts could exceed) nor adds
finalizers, so deleting a Workflow is never blocked by the operator and
ownerReferences take its children with it.

Every handler is a coroutine: kopf would run a plain function in a worker
thread, and nothing here may leave kopf's event loop. A reconcile that raises
is logged (with its traceback when it is not an API error), counted, and
retried with per-Workflow backoff; never dropped.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, Final

import kopf
from kubernetes.aio import client
from pydantic import ValidationError

from troupe_operator.api import GROUP, VERSION, AgentConcurrency, AgentSpec
from troupe_operator.controller import (
    agent_concurrency,
    agent_limits,
    agents,
    cache_entries,
    inventory,
    kopf_settings,
    metrics,
    observe,
    resolving,
    tenancy,
    tenant_limits,
    tenants,
    tracing,
)
from troupe_operator.controller.config import OperatorConfig
from troupe_operator.controller.kube import Connect, Kube
from troupe_operator.controller.observe import JobRecord
from troupe_operator.controller.reconciler import WorkflowReconciler
from troupe_operator.controller.runs import Runs, WorkflowKey
from troupe_operator.controller.workers import Workers
from troupe_operator.resolution import Template
from troupe_operator.workflow import LABEL_WORKFLOW, AgentProfile, Event

logger = logging.getLogger(__name__)

AgentEntry = tuple[str, AgentSpec | None, AgentProfile]
GC_THRESHOLDS: Final = (20_000, 20, 50)
"""Allocations before a young collection; young ones before a middle one; middle ones
before a full one (CPython's defaults are 700, 10, 10)."""
JOB_INDEX: Final = "task_jobs"
AGENT_INDEX: Final = "agents"


class Controller:
    """The work queue, the workers and the reconciler, started with the operator."""

    def __init__(self) -> None:
        self.runs = Runs()
        self.workers: Workers[WorkflowKey] = Workers(metrics.CONTROLLER)
        self.reconciler: WorkflowReconciler | None = None
        self.gate: tenant_limits.TenantGate | None = None
        self.agent_gate: agent_limits.AgentGate | None = None
        self.concurrency: agent_concurrency.Concurrency | None = None
        self._showing: asyncio.Task[None] | None = None
        self.tracer = tracing.DISABLED
        self._api: client.ApiClient | None = None
        self._collector: asyncio.Task[None] | None = None
        self.cache_index: cache_entries.Index | None = None
        """The namespaces' cache entries as kopf indexes them (set once started)."""

    async def start(
        self,
        config: OperatorConfig,
        api: client.ApiClient,
        jobs: kopf.Index[WorkflowKey, JobRecord],
        agents: kopf.Index[str, AgentEntry],
        templates: kopf.Index[tuple[str, str], Template],
        namespaces: kopf.Index[str, str | None],
        tenant_indexes: tenant_limits.Indexes,
        agent_indexes: AgentIndexes,
        cache: cache_entries.Index,
    ) -> None:
        self._api = api
        self.cache_index = cache
        self.tracer = tracing.RunTracer.from_env()
        self.gate = tenant_limits.TenantGate(tenant_indexes, self.runs.created_in, self.enqueue)

        def agents_of(namespace: str) -> Mapping[str, AgentSpec]:
            return {name: spec for name, spec, _ in agents.get(namespace, ()) if spec is not None}

        def profiles_of(namespace: str) -> Mapping[str, AgentProfile]:
            return {name: profile for name, _, profile in agents.get(namespace, ())}

        kube = Kube(api, config.api_timeout_seconds)
        concurrency = self.concurrency = agent_concurrency.Concurrency(agent_indexes.kept)

        def cap(namespace: str, agent: str) -> int | None:
            return concurrency.cap((namespace, agent), agents_of(namespace).get(agent))

        self.agent_gate = agent_limits.AgentGate(
            agent_indexes.active, self.runs.created_agents_in, cap, self.enqueue
        )
        concurrency.running = self.agent_gate.running
        self._showing = asyncio.create_task(
            agent_concurrency.show(concurrency, _agent_writer(api, config))
        )
        self.reconciler = WorkflowReconciler(
            kube,
            config,
            jobs=lambda key: jobs.get(key, ()),
            agents=agents_of,
            agent_profiles=profiles_of,
            templates=resolving.from_index(templates),
            runs=self.runs,
            refusal=tenancy.refusal(config, namespaces, "Workflows"),
            gate=self.gate,
            agent_gate=self.agent_gate,
            concurrency=concurrency,
            tracer=self.tracer,
            cache=lambda namespace: cache_entries.entries_in(cache, namespace),
        )
        self.workers.start(self.reconciler.reconcile, config.workers)
        self._collector = asyncio.create_task(cache_entries.collector(kube, cache, config))

    async def stop(self) -> None:
        inventory.INVENTORY.unwatch()
        if self._collector is not None:
            self._collector.cancel()
            await asyncio.gather(self._collector, return_exceptions=True)
        await self.workers.stop()
        if self._showing is not None:
            await agent_concurrency.stop(self._showing)
        self.tracer.shutdown()
        if self._api is not None:
            await self._api.close()  # type: ignore[no-untyped-call]  # untyped upstream

    def enqueue(self, key: WorkflowKey) -> None:
        self.workers.enqueue(key)


@dataclass(frozen=True)
class AgentIndexes:
    """The kopf indexes the Agents' concurrency caps are counted from."""

    active: Mapping[agent_limits.AgentKey, Collection[tuple[str, str]]]
    kept: Mapping[agent_limits.AgentKey, Collection[int]]


def _agent_writer(api: client.ApiClient, config: OperatorConfig) -> agent_concurrency.Writer:
    """Writes an Agent's status.concurrency (with the resourceVersion read) and its Event."""
    kube = agents.AgentKube(api, config.api_timeout_seconds)
    events = agents.AgentEvents(kube, config.reporting_instance, agents.now)

    async def write(
        key: agent_limits.AgentKey, status: AgentConcurrency, event: Event | None
    ) -> None:
        body = await kube.read_agent(*key)
        if body is None:
            return
        version = body["metadata"]["resourceVersion"]
        await kube.patch_agent_status(*key, version, {"concurrency": status.to_wire()})
        if event is not None:
            await events.post(body, event)

    return write


def _agent_entry(body: kopf.Body, name: str) -> AgentEntry:
    """An Agent whose spec does not parse counts as absent (its own status says why)."""
    profile = observe.agent_profile(body)
    try:
        return name, AgentSpec.model_validate(dict(body.get("spec") or {})), profile
    except ValidationError:
        return name, None, profile


def register(
    registry: kopf.OperatorRegistry,
    load_config: Callable[[], OperatorConfig],
    connect: Connect,
) -> Controller:
    """Add the Workflow, Agent and Tenant controllers' indexes and handlers to ``registry``."""
    controller = Controller()
    tenancy.register_index(registry)
    resolving.register_index(registry)
    tenant_limits.register_indexes(registry)
    agent_limits.register_index(registry)
    agent_concurrency.register_index(registry)
    inventory.register_indexes(registry)
    cache_entries.register_index(registry)
    agents.register(registry, load_config, connect)
    tenants.register(registry, load_config, connect)

    @observe.task_job_index(registry, JOB_INDEX)
    async def index_job(
        body: kopf.Body, namespace: str | None, labels: kopf.Labels, **_: Any
    ) -> Any:
        record = observe.job_record(body)
        return {} if record is None else {(namespace, labels[LABEL_WORKFLOW]): record}

    @kopf.index(GROUP, VERSION, "agents", id=AGENT_INDEX, registry=registry)
    async def index_agent(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> Any:
        return {namespace: _agent_entry(body, name)}

    @kopf.on.startup(registry=registry)
    async def start(settings: kopf.OperatorSettings, **indices: Any) -> None:
        config = load_config()
        kopf_settings.configure(settings, config)
        await controller.start(
            config,
            await connect(),
            indices[JOB_INDEX],
            indices[AGENT_INDEX],
            indices[resolving.TEMPLATE_INDEX],
            indices[tenancy.NAMESPACES_INDEX],
            tenant_limits.Indexes(
                tenant_of=indices[tenancy.NAMESPACES_INDEX],
                limits=indices[tenant_limits.LIMITS_INDEX],
                namespaces=indices[tenant_limits.NAMESPACES_INDEX],
                active_jobs=indices[tenant_limits.ACTIVE_JOBS_INDEX],
                tokens=indices[tenant_limits.TOKENS_INDEX],
            ),
            AgentIndexes(
                active=indices[agent_limits.ACTIVE_AGENT_JOBS_INDEX],
                kept=indices[agent_concurrency.KEPT_INDEX],
            ),
            indices[cache_entries.CACHE_INDEX],
        )
        inventory.INVENTORY.watch(
            inventory.Sources(
                phases=indices[inventory.WORKFLOW_PHASES_INDEX],
                budgets=indices[inventory.TENANT_BUDGETS_INDEX],
                waiting=controller.runs.waiting,
            )
        )
        # What exists now (libraries, the client) lives as long as the process: keep it out
        # of every full garbage collection, which would otherwise scan it each time. And
        # collect less often: at a thousand live runs a full collection took up to 300 ms
        # and all collections 0.8 ms of CPU per task, while nearly all garbage here is freed
        # by reference counting anyway.
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)

    @kopf.on.cleanup(registry=registry)
    async def stop(**_: Any) -> None:
        await controller.stop()

    @kopf.on.event(GROUP, VERSION, "workflows", registry=registry)
    async def workflow_event(
        event: kopf.RawEvent, namespace: str | None, name: str, **_: Any
    ) -> None:
        key = (str(namespace), name)
        if event["type"] == "DELETED":
            if controller.runs.forget(key, uid=event["object"]["metadata"]["uid"]):
                controller.workers.queue.discard(key)
                if controller.gate is not None:
                    controller.gate.forget(key)
                if controller.agent_gate is not None:
                    controller.agent_gate.forget(key)
        elif controller.runs.seen(key, event["object"]):
            controller.enqueue(key)

    @kopf.on.event("batch", "v1", "jobs", labels={LABEL_WORKFLOW: kopf.PRESENT}, registry=registry)
    async def job_event(
        event: kopf.RawEvent, namespace: str | None, labels: kopf.Labels, **_: Any
    ) -> None:
        key = (str(namespace), labels[LABEL_WORKFLOW])
        memory = controller.runs.get(key)
        record = observe.job_record(event["object"])
        ended = event["type"] == "DELETED" or (record is not None and record.finished)
        if ended and controller.gate is not None:
            controller.gate.slots_freed(str(namespace))  # its Tenant's held-back runs may start
        if ended and controller.agent_gate is not None:
            controller.agent_gate.slots_freed(str(namespace))  # and those held by its Agent
        if memory is None or record is None or record.owner_uid != memory.uid:
            return
        if event["type"] == "DELETED":
            memory.job_deleted(record)
        elif not record.finished:
            return  # a running Job changes no decision (its own creation, its start time)
        controller.enqueue(key)

    @kopf.on.event(GROUP, VERSION, "agents", registry=registry)
    async def agent_event(event: kopf.RawEvent, namespace: str | None, name: str, **_: Any) -> None:
        """Runs waiting for this Agent, or for any Agent a selector may match, look again, as
        do those its cap held back (a raised cap, a cap removed); a deleted Agent's cap goes
        (its gauge with it)."""
        if event["type"] == "DELETED" and controller.concurrency is not None:
            controller.concurrency.forget((str(namespace), name))
        if controller.agent_gate is not None:
            controller.agent_gate.slots_freed(str(namespace))
        for key in controller.runs.waiting_for(str(namespace), name):
            controller.enqueue(key)

    @kopf.on.event(GROUP, VERSION, "workflowtemplates", registry=registry)
    async def template_event(namespace: str | None, name: str, **_: Any) -> None:
        """A WorkflowTemplate appeared or changed: the runs that name it and have not started
        resolve it again (a started run keeps what it recorded)."""
        for key in controller.runs.naming_template(str(namespace), name):
            controller.enqueue(key)

    @kopf.on.event(GROUP, VERSION, "tenants", id="workflow-tenant", registry=registry)
    async def tenant_event(name: str, **_: Any) -> None:
        """A Tenant's limits changed (a budget raised): its held-back runs look again."""
        if controller.gate is not None:
            controller.gate.tenant_changed(name)

    @kopf.on.event("", "v1", "namespaces", id="workflow-namespace", registry=registry)
    async def namespace_event(name: str, **_: Any) -> None:
        """A namespace adopted or released by a Tenant: its runs may start now, or not."""
        for key in controller.runs.in_namespace(name):
            controller.enqueue(key)

    return controller


def api_client(configuration: client.Configuration, user_agent: str) -> client.ApiClient:
    """The operator's client: its own User-Agent, and no ``~/.netrc`` or proxy from the env.

    The client's aiohttp session would otherwise look for a netrc file in a
    worker thread on every request; the operator talks to its API server
    directly, with the ServiceAccount's token.
    """
    configuration.client_session_kwargs = {"trust_env": False}
    api = client.ApiClient(configuration)
    api.user_agent = user_agent
    return api


async def api_client_from_environment(user_agent: str) -> client.ApiClient:
    """A client configured in-cluster (the pod's ServiceAccount), else from KUBECONFIG."""
    from kubernetes.aio import config

    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]  # untyped upstream
    except config.ConfigException:
        await config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    return api_client(configuration, user_agent)
