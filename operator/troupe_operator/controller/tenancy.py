"""Whether a namespace belongs to a Tenant, and what that means for the work in it.

A namespace is a Tenant's when the Tenant controller has labelled it
``troupe.dev/tenant`` (it labels what it creates or adopts, and removes the
label when it releases a namespace). kopf indexes every namespace by that
label, so the Workflow and Agent controllers ask memory, not the API, on
each reconcile; a namespace not yet in the index counts as no Tenant's, and
its label event wakes the work waiting in it.

With ``TROUPE_UNTENANTED_NAMESPACES=Refuse`` (the default) the work of a
namespace no Tenant owns is refused with the message below; with ``Allow``
nothing is checked. ``troupe run`` never asks: a local run has no Tenants.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import kopf

from troupe_operator.controller.config import OperatorConfig, UntenantedNamespaces
from troupe_operator.tenants.children import LABEL_TENANT

NAMESPACES_INDEX: Final = "namespace_tenants"
"""kopf index: a namespace's name to its ``troupe.dev/tenant`` label (None: no Tenant's)."""
NOT_TENANTED: Final = "NamespaceNotTenanted"

Refusal = Callable[[str], str | None]
"""Why work in a namespace may not start (None: it may)."""


def index_entry(name: str, labels: kopf.Labels) -> dict[str, str | None]:
    return {name: labels.get(LABEL_TENANT) or None}


def refusal(config: OperatorConfig, tenants: kopf.Index[str, str | None], kind: str) -> Refusal:
    """The refusal of this installation's setting for ``kind`` (plural), read from the index."""

    def refused(namespace: str) -> str | None:
        if config.untenanted_namespaces is UntenantedNamespaces.ALLOW:
            return None
        if any(tenants.get(namespace, ())):
            return None
        return (
            f"namespace {namespace} is not owned by any Tenant; this installation refuses "
            f"{kind} outside Tenants (TROUPE_UNTENANTED_NAMESPACES=Refuse)"
        )

    return refused


def admitted(_: str) -> str | None:
    """No refusal: for a shell without the setting (tests of the reconcilers alone)."""
    return None


def register_index(registry: kopf.OperatorRegistry) -> None:
    @kopf.index("", "v1", "namespaces", id=NAMESPACES_INDEX, registry=registry)
    async def index_namespace(name: str, labels: kopf.Labels, **_: Any) -> Any:
        return index_entry(name, labels)
