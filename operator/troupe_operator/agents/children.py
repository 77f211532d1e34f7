"""The objects an Agent with ``replicas > 0`` runs as, built as plain dicts.

Every child is named after the Agent (``<agent>``, shortened with a hash
when the Agent's name is no DNS-1035 label of at most 63 characters, which a
Service name must be), labelled ``app.kubernetes.io/name=troupe-agent``,
``app.kubernetes.io/instance`` and ``troupe.dev/agent``, and owned by the
Agent, so deleting the Agent deletes them; except the ClusterRoleBinding,
which a namespaced owner cannot own (the shell deletes it by name).

Least privilege is the rule: the pods' ServiceAccount may get and update
their supervisor Lease (by name) and create Leases (RBAC cannot limit create
by name), get and patch their own Agent's status (by name), keep their
team's conversations (get, list, create, update and delete Conversations in
the namespace: the pods name them, so no name is known in advance), create
Events (the supervisor reports on its Agent), and, through
``system:auth-delegator``, create TokenReviews and SubjectAccessReviews to
authenticate and authorize callers of serve mode. Nothing else: no Secrets
(the API key reaches the container only as an environment variable the
kubelet takes from the Secret), no watch, no list but of Conversations. A
team's members are reached at their Services, whose addresses the pods get
in their environment: a supervisor needs no right to read Agents. Pods run
under the restricted Pod Security profile with a read-only root filesystem.
When the operator exports OpenTelemetry, the pods get its export settings
(``ServeSettings.telemetry``), so their spans join their callers' traces.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from enum import Enum
from functools import cached_property
from typing import Any, Final

from troupe_operator.api import API_VERSION, GROUP, AgentSpec
from troupe_operator.api.serve_env import (
    AGENT_UID_ENV,
    LEASE_ENV,
    MEMBERS_ENV,
    NAME_ENV,
    POD_IP_ENV,
    POD_NAME_ENV,
    POD_NAMESPACE_ENV,
    SPEC_ENV,
)
from troupe_operator.workflow import API_KEY_ENV
from troupe_operator.workflow.naming import HASH_CHARS, LABEL_MANAGED_BY, MANAGED_BY, short_digest

Body = dict[str, Any]

LABEL_NAME: Final = "app.kubernetes.io/name"
LABEL_INSTANCE: Final = "app.kubernetes.io/instance"
LABEL_AGENT: Final = "troupe.dev/agent"
APP_NAME: Final = "troupe-agent"
SPEC_HASH_ANNOTATION: Final = "troupe.dev/spec-hash"
AGENT_ANNOTATION: Final = "troupe.dev/agent"
"""``<namespace>/<name>`` of the Agent a ClusterRoleBinding serves (labels cannot hold it)."""

SERVE_PORT: Final = 8080
"""The port ``troupe-agent serve`` listens on by default."""
CONTAINER: Final = "agent"
RBAC_API: Final = "rbac.authorization.k8s.io/v1"
AUTH_DELEGATOR: Final = "system:auth-delegator"
RUN_AS_USER: Final = 10001

MAX_LABEL: Final = 63
MAX_NAME: Final = 253
DNS_1035: Final = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def _shortened(text: str, limit: int) -> str:
    """``text`` if it fits ``limit``; else a prefix, ``-``, and a hash of the whole."""
    if len(text) <= limit:
        return text
    return f"{text[: limit - HASH_CHARS - 1].rstrip('-.')}-{short_digest(text)}"


class Child(Enum):
    """The kinds an Agent serves with, in the order they are written."""

    SERVICE_ACCOUNT = ("v1", "serviceaccounts", "ServiceAccount")
    ROLE = (RBAC_API, "roles", "Role")
    ROLE_BINDING = (RBAC_API, "rolebindings", "RoleBinding")
    CLUSTER_ROLE_BINDING = (RBAC_API, "clusterrolebindings", "ClusterRoleBinding")
    SERVICE = ("v1", "services", "Service")
    DEPLOYMENT = ("apps/v1", "deployments", "Deployment")

    def __init__(self, api_version: str, plural: str, kind: str) -> None:
        self.api_version = api_version
        self.plural = plural
        self.kind = kind

    @property
    def namespaced(self) -> bool:
        return self is not Child.CLUSTER_ROLE_BINDING


@dataclass(frozen=True)
class ServeSettings:
    """What the installation decides about agent pods: the default image and its command."""

    image: str
    command: tuple[str, ...]
    telemetry: tuple[tuple[str, str], ...] = ()
    """OpenTelemetry export settings the pods get (the operator's ``OTEL_*`` ones that apply)."""


@dataclass(frozen=True)
class AgentRef:
    """One Agent object: the names and labels of everything it owns derive from this."""

    namespace: str
    name: str
    uid: str

    @cached_property
    def child_name(self) -> str:
        """The Agent's name if it is a DNS-1035 label that fits 63 characters; else a fit one."""
        if DNS_1035.match(self.name) and len(self.name) <= MAX_LABEL:
            return self.name
        cleaned = re.sub(r"[^a-z0-9-]", "-", self.name)
        base = cleaned if cleaned[0].isalpha() else f"a-{cleaned}"
        return f"{base[: MAX_LABEL - HASH_CHARS - 1].rstrip('-')}-{short_digest(self.name)}"

    @property
    def lease_name(self) -> str:
        """The Lease the Agent's pods elect their supervisor with."""
        return f"{self.child_name}-supervisor"

    @property
    def cluster_role_binding_name(self) -> str:
        """Unique across namespaces: a namespace has no dot, so ``a.b.c`` reads one way only."""
        return _shortened(f"troupe-agent.{self.namespace}.{self.name}", MAX_NAME)

    def child_names(self) -> dict[Child, str]:
        return {
            child: (
                self.cluster_role_binding_name
                if child is Child.CLUSTER_ROLE_BINDING
                else self.child_name
            )
            for child in Child
        }

    def selector(self) -> dict[str, str]:
        return {LABEL_NAME: APP_NAME, LABEL_INSTANCE: _shortened(self.name, MAX_LABEL)}

    def labels(self) -> dict[str, str]:
        return {
            **self.selector(),
            LABEL_AGENT: _shortened(self.name, MAX_LABEL),
            LABEL_MANAGED_BY: MANAGED_BY,
        }

    def owner_reference(self) -> Body:
        return {
            "apiVersion": API_VERSION,
            "kind": "Agent",
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }

    def metadata(self, child: Child) -> Body:
        metadata: Body = {"name": self.child_names()[child], "labels": self.labels()}
        if child.namespaced:
            metadata["namespace"] = self.namespace
            metadata["ownerReferences"] = [self.owner_reference()]
        else:
            metadata["annotations"] = {AGENT_ANNOTATION: f"{self.namespace}/{self.name}"}
        return metadata


def _object(agent: AgentRef, child: Child, **fields: Any) -> Body:
    return {
        "apiVersion": child.api_version,
        "kind": child.kind,
        "metadata": agent.metadata(child),
        **fields,
    }


def _subjects(agent: AgentRef) -> list[Body]:
    return [{"kind": "ServiceAccount", "name": agent.child_name, "namespace": agent.namespace}]


def service_account(agent: AgentRef) -> Body:
    return _object(agent, Child.SERVICE_ACCOUNT, automountServiceAccountToken=True)


def role(agent: AgentRef) -> Body:
    """Its supervisor Lease and its Agent's status, by name; create Leases (not limitable);
    Conversations and Events, whose names the pods choose."""
    return _object(
        agent,
        Child.ROLE,
        rules=[
            {
                "apiGroups": ["coordination.k8s.io"],
                "resources": ["leases"],
                "resourceNames": [agent.lease_name],
                "verbs": ["get", "update"],
            },
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
            {
                "apiGroups": [GROUP],
                "resources": ["agents/status"],
                "resourceNames": [agent.name],
                "verbs": ["get", "patch"],
            },
            {
                "apiGroups": [GROUP],
                "resources": ["conversations"],
                "verbs": ["get", "list", "create", "update", "delete"],
            },
            {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
        ],
    )


def role_binding(agent: AgentRef) -> Body:
    return _object(
        agent,
        Child.ROLE_BINDING,
        roleRef={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": agent.child_name},
        subjects=_subjects(agent),
    )


def cluster_role_binding(agent: AgentRef) -> Body:
    """TokenReview and SubjectAccessReview, which serve mode authenticates callers with."""
    return _object(
        agent,
        Child.CLUSTER_ROLE_BINDING,
        roleRef={
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": AUTH_DELEGATOR,
        },
        subjects=_subjects(agent),
    )


def service(agent: AgentRef) -> Body:
    return _object(
        agent,
        Child.SERVICE,
        spec={
            "type": "ClusterIP",
            "selector": agent.selector(),
            "ports": [
                {"name": "http", "port": SERVE_PORT, "targetPort": "http", "protocol": "TCP"}
            ],
        },
    )


def _pod_spec(spec: AgentSpec) -> str:
    """The spec as the pods get it: without ``replicas``, so scaling replaces no pod."""
    return spec.model_dump_json(by_alias=True, exclude_none=True, exclude={"replicas"})


def spec_hash(
    spec: AgentSpec,
    image: str,
    command: tuple[str, ...],
    telemetry: tuple[tuple[str, str], ...] = (),
) -> str:
    """What the pods run, hashed: it changes exactly when the pods must be replaced."""
    pods: dict[str, Any] = {"spec": _pod_spec(spec), "image": image, "command": list(command)}
    if telemetry:  # absent when off, so that an install without it keeps its hashes
        pods["telemetry"] = dict(telemetry)
    return hashlib.sha256(json.dumps(pods, sort_keys=True).encode()).hexdigest()[:16]


def member_urls(namespace: str, members: list[str]) -> dict[str, str]:
    """Where each member of a team serves: its Agent's Service, by DNS name."""
    return {
        member: f"http://{AgentRef(namespace, member, '').child_name}.{namespace}.svc:{SERVE_PORT}"
        for member in members
    }


def _field(path: str) -> Body:
    return {"fieldRef": {"fieldPath": path}}


def _environment(
    agent: AgentRef, spec: AgentSpec, telemetry: tuple[tuple[str, str], ...]
) -> list[Body]:
    env: list[Body] = [
        {"name": NAME_ENV, "value": agent.name},
        {"name": AGENT_UID_ENV, "value": agent.uid},
        {"name": SPEC_ENV, "value": _pod_spec(spec)},
        {"name": LEASE_ENV, "value": agent.lease_name},
        {"name": POD_NAME_ENV, "valueFrom": _field("metadata.name")},
        {"name": POD_NAMESPACE_ENV, "valueFrom": _field("metadata.namespace")},
        {"name": POD_IP_ENV, "valueFrom": _field("status.podIP")},
    ]
    if spec.members:
        urls = member_urls(agent.namespace, spec.members)
        env.append({"name": MEMBERS_ENV, "value": json.dumps(urls, sort_keys=True)})
    secret = spec.model.api_key_secret_ref
    if secret is not None:
        env.append(
            {
                "name": API_KEY_ENV,
                "valueFrom": {"secretKeyRef": {"name": secret.name, "key": secret.key}},
            }
        )
    env.extend({"name": name, "value": value} for name, value in telemetry)
    return env


def _probe(path: str, period: int) -> Body:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": 3,
    }


def deployment(agent: AgentRef, spec: AgentSpec, settings: ServeSettings) -> Body:
    """The agent's pods in serve mode; the pod template changes exactly when the spec does."""
    image = spec.image or settings.image
    container = {
        "name": CONTAINER,
        "image": image,
        "command": list(settings.command),
        "args": ["serve", "--port", str(SERVE_PORT), "--api-key-env", API_KEY_ENV],
        "ports": [{"name": "http", "containerPort": SERVE_PORT, "protocol": "TCP"}],
        "env": _environment(agent, spec, settings.telemetry),
        "resources": spec.resources.to_wire(),
        "readinessProbe": _probe("/readyz", 5),
        "livenessProbe": _probe("/healthz", 10),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    return _object(
        agent,
        Child.DEPLOYMENT,
        spec={
            "replicas": spec.replicas,
            "selector": {"matchLabels": agent.selector()},
            "template": {
                "metadata": {
                    "labels": agent.labels(),
                    "annotations": {
                        SPEC_HASH_ANNOTATION: spec_hash(
                            spec, image, settings.command, settings.telemetry
                        )
                    },
                },
                "spec": {
                    "serviceAccountName": agent.child_name,
                    "automountServiceAccountToken": True,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": RUN_AS_USER,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                    "volumes": [{"name": "tmp", "emptyDir": {}}],
                },
            },
        },
    )


def desired(agent: AgentRef, spec: AgentSpec, settings: ServeSettings) -> dict[Child, Body]:
    """Every child of a serving Agent, in the order they are written."""
    return {
        Child.SERVICE_ACCOUNT: service_account(agent),
        Child.ROLE: role(agent),
        Child.ROLE_BINDING: role_binding(agent),
        Child.CLUSTER_ROLE_BINDING: cluster_role_binding(agent),
        Child.SERVICE: service(agent),
        Child.DEPLOYMENT: deployment(agent, spec, settings),
    }
