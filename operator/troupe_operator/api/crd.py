"""The CustomResourceDefinitions of the API, built from its models.

The models are the single source of truth; this module turns pydantic's JSON
Schema into the *structural* OpenAPI v3 schema Kubernetes demands (no
``$ref``, no nullable ``anyOf``, no ``additionalProperties: false``) and adds
what only a CRD has: scope, names, printer columns and the status subresource
(for the kinds that have a status: a Conversation and a WorkflowTemplate are all spec).
It lives beside the models so that every reader of objects (``troupe
validate``, ``troupe run``) judges them by the very schema the cluster has;
writing the YAML files is :mod:`troupe_operator.crdgen`'s job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from troupe_operator.api.agent import AgentSpec, AgentStatus
from troupe_operator.api.common import GROUP, VERSION
from troupe_operator.api.conversation import ConversationSpec
from troupe_operator.api.tenant import TenantSpec, TenantStatus
from troupe_operator.api.workflow import WorkflowSpec, WorkflowStatus
from troupe_operator.api.workflow_template import WorkflowTemplateSpec

JsonSchema = dict[str, Any]

DROPPED_KEYWORDS = frozenset({"title", "additionalProperties", "$defs"})
AGE_COLUMN = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}


@dataclass(frozen=True)
class Kind:
    """What a CRD needs beyond the models of its spec and status."""

    kind: str
    plural: str
    short_names: list[str]
    namespaced: bool
    spec: type[BaseModel]
    status: type[BaseModel] | None
    """None: the kind has no status, and so no status subresource."""
    description: str
    columns: list[dict[str, Any]] = field(default_factory=list)


KINDS = [
    Kind(
        kind="Agent",
        plural="agents",
        short_names=["ag"],
        namespaced=True,
        spec=AgentSpec,
        status=AgentStatus,
        description="An LLM agent: its role, prompt, model, and the pods it runs as.",
        columns=[
            {"name": "Role", "type": "string", "jsonPath": ".spec.role"},
            {"name": "Model", "type": "string", "jsonPath": ".spec.model.name"},
            {"name": "Ready", "type": "string", "jsonPath": ".status.ready"},
            {"name": "Supervisor", "type": "string", "jsonPath": ".status.supervisor"},
        ],
    ),
    Kind(
        kind="Workflow",
        plural="workflows",
        short_names=["wf"],
        namespaced=True,
        spec=WorkflowSpec,
        status=WorkflowStatus,
        description="A DAG of agent tasks, run as one Job per task attempt.",
        columns=[
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            {"name": "Progress", "type": "string", "jsonPath": ".status.progress"},
            {"name": "Tokens", "type": "integer", "jsonPath": ".status.usage.totalTokens"},
            {
                "name": "Template",
                "type": "string",
                "jsonPath": ".spec.workflowTemplateRef.name",
                "priority": 1,
            },
            {"name": "Priority", "type": "integer", "jsonPath": ".spec.priority", "priority": 1},
        ],
    ),
    Kind(
        kind="WorkflowTemplate",
        plural="workflowtemplates",
        short_names=["wftmpl"],
        namespaced=True,
        spec=WorkflowTemplateSpec,
        status=None,
        description="Tasks, default inputs and settings that Workflows run by workflowTemplateRef.",
        columns=[
            {"name": "Parallelism", "type": "integer", "jsonPath": ".spec.parallelism"},
            {"name": "Timeout", "type": "integer", "jsonPath": ".spec.timeoutSeconds"},
        ],
    ),
    Kind(
        kind="Tenant",
        plural="tenants",
        short_names=["tnt"],
        namespaced=False,
        spec=TenantSpec,
        status=TenantStatus,
        description="A team's namespaces, owners, quota and limits.",
        columns=[
            {"name": "Namespaces", "type": "string", "jsonPath": ".status.namespacesReady"},
            {"name": "Running", "type": "integer", "jsonPath": ".status.runningTasks"},
            {"name": "Tokens", "type": "integer", "jsonPath": ".status.tokensUsed"},
        ],
    ),
    Kind(
        kind="Conversation",
        plural="conversations",
        short_names=["conv"],
        namespaced=True,
        spec=ConversationSpec,
        status=None,
        description="A supervisor Agent's checkpoint of one team conversation, by its pods.",
        columns=[{"name": "Agent", "type": "string", "jsonPath": ".spec.agent"}],
    ),
]
TRAILING_COLUMNS = {
    "Agent": [AGE_COLUMN],
    "Workflow": [
        AGE_COLUMN,
        {"name": "Duration", "type": "string", "jsonPath": ".status.duration"},
    ],
    "WorkflowTemplate": [AGE_COLUMN],
    "Tenant": [AGE_COLUMN],
    "Conversation": [AGE_COLUMN],
}


def structural(schema: JsonSchema, defs: dict[str, JsonSchema]) -> JsonSchema:
    """Inline references and rewrite what Kubernetes' structural schemas refuse."""
    if "$ref" in schema:
        target = defs[schema["$ref"].rsplit("/", 1)[-1]]
        siblings = {k: v for k, v in schema.items() if k != "$ref"}
        return structural({**target, **siblings}, defs)
    if "x-kubernetes-int-or-string" in schema:
        return {k: v for k, v in schema.items() if k not in DROPPED_KEYWORDS}
    variants = schema.get("anyOf")
    if variants is not None:
        non_null = [v for v in variants if v.get("type") != "null"]
        if len(non_null) != 1:
            raise ValueError(f"cannot express anyOf {variants!r} in a structural schema")
        rest = {k: v for k, v in schema.items() if k not in ("anyOf", "default")}
        if schema.get("default") is not None:
            rest["default"] = schema["default"]
        return structural({**non_null[0], **rest}, defs)
    result: JsonSchema = {}
    for key, value in schema.items():
        if key in DROPPED_KEYWORDS:
            continue
        if key == "properties":
            result[key] = {name: structural(sub, defs) for name, sub in value.items()}
        elif key == "items":
            result[key] = structural(value, defs)
        elif key == "const":
            result["enum"] = [value]
        else:
            result[key] = value
    additional = schema.get("additionalProperties")
    if isinstance(additional, dict):
        result["additionalProperties"] = structural(additional, defs)
    return result


def model_schema(model: type[BaseModel]) -> JsonSchema:
    """The structural schema of one model, with wire (camelCase) names."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return structural(raw, raw.get("$defs", {}))


def crd(kind: Kind) -> dict[str, Any]:
    """The full CustomResourceDefinition of one kind."""
    properties = {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
        "spec": model_schema(kind.spec),
    }
    if kind.status is not None:
        properties["status"] = model_schema(kind.status)
    schema = {
        "type": "object",
        "description": kind.description,
        "required": ["spec"],
        "properties": properties,
    }
    version: dict[str, Any] = {"name": VERSION, "served": True, "storage": True}
    if kind.status is not None:
        version["subresources"] = {"status": {}}
    version["additionalPrinterColumns"] = kind.columns + TRAILING_COLUMNS[kind.kind]
    version["schema"] = {"openAPIV3Schema": schema}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{kind.plural}.{GROUP}",
            "labels": {"app.kubernetes.io/part-of": "troupe"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced" if kind.namespaced else "Cluster",
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.kind.lower(),
                "shortNames": kind.short_names,
                "categories": ["troupe"],
            },
            "versions": [version],
        },
    }


def open_api_schema(kind: Kind) -> JsonSchema:
    """The ``openAPIV3Schema`` the cluster validates objects of this kind with."""
    schema: JsonSchema = crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema
