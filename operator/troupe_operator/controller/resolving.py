"""The shell's part of resolving a Workflow's spec: reading what it names, for the core.

A Workflow that names a WorkflowTemplate or takes inputs from ConfigMaps and Secrets is
resolved (``troupe_operator.resolution``) before the core sees it, and only until its run
starts: from then on the core gets the spec the run recorded, so a template edited or
deleted, or a ConfigMap changed, changes nothing. Only an edit of the Workflow's own spec
(told by ``status.resolvedFrom.workflowSpecHash``) is resolved again, for the core to refuse
like any spec change mid-run.

Templates come from a kopf index of WorkflowTemplates (list and watch: a Workflow waiting
for its template is woken when it appears); ConfigMaps and Secrets are read by name, each
call under the operator's API timeout, and only while the run has not started. Of a Secret
only the key names are kept: the operator never holds an input's Secret value (the task
pods get it from the kubelet). Nothing here writes anything.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any, Final

import kopf
from pydantic import ValidationError

from troupe_operator import resolution
from troupe_operator.api import (
    GROUP,
    VERSION,
    ResolvedFrom,
    TemplatePin,
    WorkflowSpec,
    WorkflowStatus,
    WorkflowTemplateSpec,
)
from troupe_operator.controller.kube import Kube
from troupe_operator.manifests import schema_messages
from troupe_operator.workflow import InvalidSpec, UnresolvedSpec, spec_hash

TEMPLATE_INDEX: Final = "workflow_templates"
"""kopf index: ``(namespace, name)`` to the WorkflowTemplate as read (a ``Template``)."""

Templates = Callable[[str, str], resolution.Template | None]
Resolved = tuple[WorkflowSpec | InvalidSpec | UnresolvedSpec, ResolvedFrom | None]


def template_of(body: Mapping[str, Any]) -> resolution.Template:
    """A WorkflowTemplate object as resolution takes it: parsed once, here, or why not."""
    metadata = body.get("metadata") or {}
    pin = TemplatePin(
        name=str(metadata.get("name")),
        uid=metadata.get("uid"),
        resource_version=metadata.get("resourceVersion"),
        generation=metadata.get("generation"),
    )
    try:
        return resolution.Template(pin, WorkflowTemplateSpec.model_validate(body.get("spec") or {}))
    except ValidationError as error:
        return resolution.Template(pin, None, schema_messages(error))


def register_index(registry: kopf.OperatorRegistry) -> None:
    @kopf.index(GROUP, VERSION, "workflowtemplates", id=TEMPLATE_INDEX, registry=registry)
    async def index_template(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> Any:
        return {(namespace, name): template_of(body)}


def from_index(index: kopf.Index[tuple[str, str], resolution.Template]) -> Templates:
    def template(namespace: str, name: str) -> resolution.Template | None:
        return next(iter(index.get((namespace, name), ())), None)

    return template


def pinned(own: WorkflowSpec, status: WorkflowStatus) -> bool:
    """Whether the run has started from this very spec of the Workflow's own (so it follows
    its recorded spec, whatever its template and inputs' sources say now)."""
    source = status.resolved_from
    return (
        status.spec_hash is not None
        and source is not None
        and source.workflow_spec_hash == spec_hash(own)
    )


class SpecResolver:
    """Resolves Workflows' specs from the templates known and the ConfigMaps and Secrets read."""

    def __init__(self, kube: Kube, templates: Templates) -> None:
        self.kube = kube
        self.templates = templates

    async def resolve(self, namespace: str, own: WorkflowSpec) -> Resolved:
        """The spec the run would follow if it started now, and what it was resolved from."""
        ref = own.workflow_template_ref
        template = self.templates(namespace, ref.name) if ref is not None else None
        merged = resolution.merge(own, template)
        if not isinstance(merged, resolution.Merged):
            return merged, None
        config_maps = resolution.config_map_names(merged.spec)
        secrets = resolution.secret_names(merged.spec)
        data = await asyncio.gather(*(self._config_map_data(namespace, n) for n in config_maps))
        keys = await asyncio.gather(*(self.kube.secret_keys(namespace, n) for n in secrets))
        found = (dict(zip(config_maps, data, strict=True)), dict(zip(secrets, keys, strict=True)))
        return resolution.finish(merged, *found), merged.resolved_from

    async def _config_map_data(self, namespace: str, name: str) -> Mapping[str, str] | None:
        body = await self.kube.read_config_map(namespace, name)
        return None if body is None else dict(body.get("data") or {})
