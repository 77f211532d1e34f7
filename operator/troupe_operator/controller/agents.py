"""The Agent controller on kopf: Agents with ``replicas > 0`` served as a Deployment and Service.

The rules are in the pure core (``troupe_operator.agents``); this shell
observes, asks it, and executes. Events on Agents and on the Deployments
they own (by label) only put the Agent's key on a work queue; workers
reconcile it: read the Agent, the keys (never the values) of the Secret its
key comes from, its children and a team's member Agents, by name; create
what is missing and replace what differs with the ``resourceVersion`` read
(a concurrent change answers 409 and the reconcile is retried); write the
status (only when it changed: the status write is itself an Agent event);
then post Events.
Every API call is bounded (``Kube``). Transient failures are retried with
backoff (``Workers``); a write refused for good (403, 422) becomes the
Agent's Error condition and a Warning Event.

The status is shared with the Agent's supervisor pod, which writes its own
fields and conditions. The operator's merge patch carries only its fields
(``OWNED_STATUS``) and, in ``conditions``, the whole list as the core left
it (the core keeps the pod's conditions as read), with the
``resourceVersion`` of the Agent read: had the pod written in between, the
patch answers 409 and the reconcile runs again on what the pod wrote.

A team depends on its members, whose events are not its own: kopf indexes
every Agent by the members it lists (``@kopf.index``), and an event on an
Agent also queues each Agent of its namespace that lists it, so a member
that appears, goes or scales wakes its supervisors at once.

Reading a Secret needs ``get`` on Secrets: the API has no way to read only
a Secret's keys, so the operator reads it and keeps the set of keys of its
``data`` and nothing else; no value is logged, stored or compared.

What no watched event announces (a Secret appearing, a quota freed) is seen
at the next resync: an Agent that is not Ready is looked at again every
``resync_seconds``. The operator does not watch Secrets, which would keep
every Secret of the cluster in its memory.

A namespaced Agent cannot own its ClusterRoleBinding, so no garbage
collector removes it: when the Agent is gone (its delete event, or a
reconcile that finds it absent) the binding is deleted by name, and at
start-up every binding labelled as Troupe's is looked at, so one whose Agent
went while the operator was down goes too. No finalizer: deleting an Agent
is never blocked by an operator that is down or uninstalled.
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

from troupe_operator import agents, otel_config
from troupe_operator.agents import AgentRef, Child, Decision, Observation, ServeSettings
from troupe_operator.agents.children import AGENT_ANNOTATION, APP_NAME, LABEL_NAME
from troupe_operator.api import API_VERSION, GROUP, VERSION, AgentSpec, AgentStatus
from troupe_operator.controller import tenancy
from troupe_operator.controller.config import OperatorConfig
from troupe_operator.controller.events import EventRecorder
from troupe_operator.controller.kube import MERGE_PATCH, ApiError, Body, Connect, Kube, path
from troupe_operator.controller.workers import Workers
from troupe_operator.manifests import schema_messages
from troupe_operator.workflow import InvalidSpec

logger = logging.getLogger(__name__)

AgentKey = tuple[str, str]
OWNED_STATUS: Final = frozenset(
    {"phase", "replicas", "ready_replicas", "ready", "observed_generation", "conditions"}
)
"""The status fields this controller writes; ``supervisor``, ``leaseTransitions`` and
``calls`` are the supervisor pod's. ``conditions`` is shared: the core says which types are
the operator's (``agents.core.OWNED_CONDITIONS``) and keeps the others as read."""
NAMES_INDEX: Final = "agent_names"
"""kopf index: a namespace to the names of its Agents (its Tenant changed: look at them)."""
TEAMS_INDEX: Final = "agent_teams"
"""kopf index: ``(namespace, member)`` to the names of the Agents that list that member."""


def _child_path(child: Child, namespace: str, name: str = "") -> str:
    if child.namespaced:
        return path(child.api_version, child.plural, namespace, name)
    return f"/apis/{child.api_version}/{child.plural}" + (f"/{name}" if name else "")


class AgentKube(Kube):
    """The calls the Agent controller makes, each bounded like every ``Kube`` call."""

    async def read_agent(self, namespace: str, name: str) -> Body | None:
        return await self._read(path(API_VERSION, "agents", namespace, name))

    async def patch_agent_status(
        self, namespace: str, name: str, resource_version: str, status: Body
    ) -> Body:
        """Merge ``status`` in, unless the Agent changed since ``resource_version`` (409)."""
        resource = path(API_VERSION, "agents", namespace, name) + "/status"
        patch = {"metadata": {"resourceVersion": resource_version}, "status": status}
        return await self._call("patch", resource, patch, content_type=MERGE_PATCH)

    async def read_child(self, child: Child, namespace: str, name: str) -> Body | None:
        return await self._read(_child_path(child, namespace, name))

    async def create_child(self, child: Child, namespace: str, body: Body) -> None:
        if await self._create(_child_path(child, namespace), body) is None:
            raise ApiError(409, "Conflict", f"{child.kind} {body['metadata']['name']} appeared")

    async def replace_child(self, child: Child, namespace: str, body: Body) -> None:
        name = body["metadata"]["name"]
        await self._call("put", _child_path(child, namespace, name), body)

    async def delete_child(self, child: Child, namespace: str, name: str) -> None:
        """Delete a child (its pods in the background); one already gone is fine."""
        try:
            await self._call(
                "delete", _child_path(child, namespace, name), propagation_policy="Background"
            )
        except ApiError as error:
            if error.status != 404:
                raise

    async def list_cluster_role_bindings(self, label_selector: str) -> list[Body]:
        return await self._list(_child_path(Child.CLUSTER_ROLE_BINDING, ""), label_selector)


class AgentEvents(EventRecorder):
    """Events on an Agent: the Workflow controller's recorder, naming the Agent."""

    def _body(self, workflow: Mapping[str, Any], event: Any, name: str, now: str) -> Body:
        body = super()._body(workflow, event, name, now)
        body["involvedObject"]["kind"] = "Agent"
        return body


def _owned_by_agent(body: Body, name: str) -> bool:
    return any(
        ref.get("kind") == "Agent"
        and ref.get("apiVersion") == API_VERSION
        and ref.get("name") == name
        for ref in body["metadata"].get("ownerReferences") or ()
    )


def now() -> datetime:
    return datetime.now(UTC)


def _replicas(agent: Body) -> int:
    """An Agent's ``spec.replicas`` as stored (the schema defaults it; 0 if it is no number)."""
    replicas = (agent.get("spec") or {}).get("replicas")
    return replicas if isinstance(replicas, int) else 0


def _members(spec: Mapping[str, Any]) -> list[str]:
    """The members an Agent's spec lists, read without parsing the rest of it."""
    members = spec.get("members")
    if not isinstance(members, list):
        return []
    return [member for member in members if isinstance(member, str)]


class AgentReconciler:
    def __init__(
        self,
        kube: AgentKube,
        config: OperatorConfig,
        refusal: tenancy.Refusal = tenancy.admitted,
    ) -> None:
        self.kube = kube
        self.config = config
        self.refusal = refusal
        self.settings = ServeSettings(
            config.agent_image,
            config.task_command,
            tuple(otel_config.child_environment().items()),
        )
        self.events = AgentEvents(kube, config.reporting_instance, now)

    async def reconcile(self, key: AgentKey) -> float | None:
        namespace, name = key
        body = await self.kube.read_agent(namespace, name)
        if body is None:
            await self._collect(AgentRef(namespace, name, ""))
            return None
        observation = await self._observe(body)
        decision = agents.reconcile(observation)
        refusals = await self._execute(observation.agent, decision)
        if refusals:
            decision = agents.reconcile(replace(observation, refusals=refusals))
        await self._write_status(body, observation.status, decision.status)
        for event in decision.events:
            await self.events.post(body, event)
        return self.config.resync_seconds if decision.resync else None

    async def _collect(self, gone: AgentRef) -> None:
        """Delete what a gone Agent left: its ClusterRoleBinding, which nothing owns, and
        children a reconcile created while the Agent was being deleted (garbage collection
        would take those too, later)."""
        for child, name in gone.child_names().items():
            found = await self.kube.read_child(child, gone.namespace, name)
            if found is not None and (not child.namespaced or _owned_by_agent(found, gone.name)):
                await self.kube.delete_child(child, gone.namespace, name)

    async def _observe(self, body: Body) -> Observation:
        metadata = body["metadata"]
        agent = AgentRef(metadata["namespace"], metadata["name"], metadata["uid"])
        spec: AgentSpec | InvalidSpec
        try:
            spec = AgentSpec.model_validate(body.get("spec") or {})
        except ValidationError as error:
            spec = InvalidSpec(schema_messages(error))
        try:
            status = AgentStatus.model_validate(body.get("status") or {})
        except ValidationError:
            status = AgentStatus()
        secret = None if isinstance(spec, InvalidSpec) else spec.model.api_key_secret_ref
        members = [] if isinstance(spec, InvalidSpec) else spec.members
        names = agent.child_names()
        found = await asyncio.gather(
            *(self.kube.read_child(child, agent.namespace, names[child]) for child in Child)
        )
        member_bodies = await asyncio.gather(
            *(self.kube.read_agent(agent.namespace, member) for member in members)
        )
        return Observation(
            agent=agent,
            generation=int(metadata.get("generation") or 1),
            spec=spec,
            status=status,
            secret_keys=(
                None
                if secret is None
                else await self.kube.secret_keys(agent.namespace, secret.name)
            ),
            children={
                child: child_body
                for child, child_body in zip(Child, found, strict=True)
                if child_body
            },
            settings=self.settings,
            now=now(),
            members={
                member: None if member_body is None else _replicas(member_body)
                for member, member_body in zip(members, member_bodies, strict=True)
            },
            tenancy_refusal=self.refusal(agent.namespace),
        )

    async def _execute(self, agent: AgentRef, decision: Decision) -> dict[Child, str]:
        """Writes in order, then deletes; the writes refused for good, with the server's words."""
        refused: dict[Child, str] = {}
        for write in decision.writes:
            try:
                if write.create:
                    await self.kube.create_child(write.child, agent.namespace, write.body)
                else:
                    await self.kube.replace_child(write.child, agent.namespace, write.body)
            except ApiError as error:
                if error.transient:
                    raise
                refused[write.child] = error.message or str(error)
        for child, name in decision.deletes:
            await self.kube.delete_child(child, agent.namespace, name)
        return refused

    async def _write_status(self, body: Body, before: AgentStatus, after: AgentStatus) -> None:
        def owned(status: AgentStatus) -> Body:
            return status.model_dump(mode="json", by_alias=True, include=set(OWNED_STATUS))

        if owned(before) != owned(after):
            metadata = body["metadata"]
            await self.kube.patch_agent_status(
                metadata["namespace"], metadata["name"], metadata["resourceVersion"], owned(after)
            )


def register(
    registry: kopf.OperatorRegistry,
    load_config: Callable[[], OperatorConfig],
    connect: Connect,
) -> Workers[AgentKey]:
    """Add the Agent controller's handlers to ``registry``."""
    workers: Workers[AgentKey] = Workers("agent")
    closing: list[client.ApiClient] = []

    @kopf.on.startup(registry=registry)
    async def start_agents(**indices: Any) -> None:
        config = load_config()
        api = await connect()
        closing.append(api)
        kube = AgentKube(api, config.api_timeout_seconds)
        refusal = tenancy.refusal(config, indices[tenancy.NAMESPACES_INDEX], "Agents")
        workers.start(AgentReconciler(kube, config, refusal).reconcile, config.workers)
        for binding in await kube.list_cluster_role_bindings(f"{LABEL_NAME}={APP_NAME}"):
            owner = (binding["metadata"].get("annotations") or {}).get(AGENT_ANNOTATION, "")
            namespace, _, name = owner.partition("/")
            if namespace and name:
                workers.enqueue((namespace, name))

    @kopf.on.cleanup(registry=registry)
    async def stop_agents(**_: Any) -> None:
        await workers.stop()
        for api in closing:
            await api.close()  # type: ignore[no-untyped-call]  # untyped upstream

    @kopf.index(GROUP, VERSION, "agents", id=NAMES_INDEX, registry=registry)
    async def index_agent_name(namespace: str | None, name: str, **_: Any) -> Any:
        return {namespace: name}

    @kopf.on.event("", "v1", "namespaces", id="agent-namespace", registry=registry)
    async def agent_namespace_event(name: str, **indices: Any) -> None:
        """A namespace adopted or released by a Tenant: its Agents may serve now, or not."""
        names: kopf.Index[str, str] = indices[NAMES_INDEX]
        for agent in names.get(name, ()):
            workers.enqueue((name, agent))

    @kopf.index(GROUP, VERSION, "agents", id=TEAMS_INDEX, registry=registry)
    async def index_agent_team(spec: kopf.Spec, namespace: str | None, name: str, **_: Any) -> Any:
        return {(namespace, member): name for member in _members(spec)}

    @kopf.on.event(GROUP, VERSION, "agents", id="agent-serve", registry=registry)
    async def agent_serve_event(namespace: str | None, name: str, **indices: Any) -> None:
        teams: kopf.Index[tuple[str | None, str], str] = indices[TEAMS_INDEX]
        workers.enqueue((str(namespace), name))
        for team in teams.get((namespace, name), ()):
            workers.enqueue((str(namespace), team))

    @kopf.on.event("apps", "v1", "deployments", labels={LABEL_NAME: APP_NAME}, registry=registry)
    async def agent_deployment_event(body: kopf.Body, namespace: str | None, **_: Any) -> None:
        for owner in body.get("metadata", {}).get("ownerReferences") or ():
            if owner.get("kind") == "Agent" and owner.get("apiVersion") == API_VERSION:
                workers.enqueue((str(namespace), owner["name"]))

    return workers
