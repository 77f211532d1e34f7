"""The Tenant shell's pure parts: its settings, which Tenant an event wakes, its status patch."""

from __future__ import annotations

from typing import Any

import pytest

from troupe_operator.api import TenantStatus
from troupe_operator.controller import tenancy
from troupe_operator.controller.config import ConfigError, OperatorConfig, UntenantedNamespaces
from troupe_operator.controller.tenants import _status_patch, tenant_of
from troupe_operator.tenants.children import LABEL_TENANT

SETTINGS = [
    ({}, "0.0.0.0/0", (443, 6443)),
    ({"TROUPE_API_SERVER_CIDR": "172.18.0.2/32"}, "172.18.0.2/32", (443, 6443)),
    ({"TROUPE_API_SERVER_PORTS": "6443"}, "0.0.0.0/0", (6443,)),
    ({"TROUPE_API_SERVER_PORTS": "443, 8443"}, "0.0.0.0/0", (443, 8443)),
]


@pytest.mark.parametrize(("environ", "cidr", "ports"), SETTINGS)
def test_where_pods_reach_the_api_server(
    environ: dict[str, str], cidr: str, ports: tuple[int, ...]
) -> None:
    config = OperatorConfig.from_env(environ)
    assert (config.api_server_cidr, config.api_server_ports) == (cidr, ports)


@pytest.mark.parametrize(
    "environ",
    [
        {"TROUPE_API_SERVER_CIDR": "kubernetes.default"},
        {"TROUPE_API_SERVER_PORTS": "https"},
        {"TROUPE_API_SERVER_PORTS": "0"},
        {"TROUPE_API_SERVER_PORTS": ""},
    ],
)
def test_a_bad_api_server_setting_is_refused_by_name(environ: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match=next(iter(environ))):
        OperatorConfig.from_env(environ)


@pytest.mark.parametrize(
    ("environ", "setting"),
    [
        ({}, UntenantedNamespaces.REFUSE),  # a multi-tenant install unless it says otherwise
        ({"TROUPE_UNTENANTED_NAMESPACES": "Refuse"}, UntenantedNamespaces.REFUSE),
        ({"TROUPE_UNTENANTED_NAMESPACES": "Allow"}, UntenantedNamespaces.ALLOW),
    ],
)
def test_work_outside_tenants_is_refused_unless_the_installation_allows_it(
    environ: dict[str, str], setting: UntenantedNamespaces
) -> None:
    assert OperatorConfig.from_env(environ).untenanted_namespaces is setting
    assert OperatorConfig().untenanted_namespaces is UntenantedNamespaces.REFUSE
    with pytest.raises(ConfigError, match="TROUPE_UNTENANTED_NAMESPACES"):
        OperatorConfig.from_env({"TROUPE_UNTENANTED_NAMESPACES": "allow"})


@pytest.mark.parametrize(
    ("setting", "namespace", "refused"),
    [
        (UntenantedNamespaces.REFUSE, "a-dev", False),  # labelled by its Tenant
        (UntenantedNamespaces.REFUSE, "plain", True),  # no label
        (UntenantedNamespaces.REFUSE, "unseen", True),  # not (yet) in the index
        (UntenantedNamespaces.ALLOW, "plain", False),
    ],
)
def test_a_namespace_is_a_tenants_by_its_label(
    setting: UntenantedNamespaces, namespace: str, refused: bool
) -> None:
    index = {
        **tenancy.index_entry("a-dev", {LABEL_TENANT: "team-a"}),
        **tenancy.index_entry("plain", {"team": "x"}),
    }
    found = {name: [value] for name, value in index.items()}
    refusal = tenancy.refusal(
        OperatorConfig(untenanted_namespaces=setting),
        found,
        "Workflows",  # type: ignore[arg-type]
    )(namespace)
    assert (refusal is not None) == refused
    if refused:
        assert refusal == (
            f"namespace {namespace} is not owned by any Tenant; this installation refuses "
            "Workflows outside Tenants (TROUPE_UNTENANTED_NAMESPACES=Refuse)"
        )


OWNER = {"apiVersion": "troupe.dev/v1alpha1", "kind": "Tenant", "name": "a-very-long-name"}
WAKES = [
    (
        {"ownerReferences": [OWNER], "labels": {"troupe.dev/tenant": "a-ve-1234"}},
        "a-very-long-name",
    ),
    ({"annotations": {"troupe.dev/tenant": "team-a"}, "labels": {}}, "team-a"),
    ({"labels": {"troupe.dev/tenant": "team-a"}}, "team-a"),
    ({"ownerReferences": [{**OWNER, "kind": "Workflow"}]}, None),
    ({}, None),
]


@pytest.mark.parametrize(("metadata", "tenant"), WAKES)
def test_the_tenant_an_event_wakes(metadata: dict[str, Any], tenant: str | None) -> None:
    assert tenant_of({"metadata": metadata}) == tenant


def test_the_status_patch_nulls_what_went_and_is_none_without_change() -> None:
    before = TenantStatus(budget_remaining=10, tokens_used=5)
    after = TenantStatus(tokens_used=7)
    patch = _status_patch(before, after)
    assert patch is not None
    assert patch["budgetRemaining"] is None and patch["tokensUsed"] == 7
    assert _status_patch(after, after) is None
