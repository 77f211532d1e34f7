"""The chart's Grafana dashboard: its ConfigMap, its PromQL (``promql-parser``), its layout.

Every query, with Grafana's variables filled in, parses as PromQL and reads only series the
operator or the agent pods export; panels do not overlap, every variable a query uses is
defined, and every panel is described in docs/observability.md. The ConfigMap carries the
label Grafana's sidecar looks for and exactly the dashboard file.
"""

from __future__ import annotations

import json
from itertools import combinations
from typing import Any

import kubernetes_validate
import promql_parser
import pytest

from tests.support.helm import ROOT, Helm, helm_or_skip
from tests.support.monitoring import (
    dashboard,
    exported_series,
    filled,
    metric_name,
    queries,
    selectors,
)
from tests.unit.test_chart import STANDARD_LABELS

BOARD = dashboard()
QUERIES = queries(BOARD)
PANELS = [panel for panel in BOARD["panels"] if panel["type"] != "row"]
DOCS = ROOT / "docs" / "observability.md"


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return helm_or_skip(tmp_path_factory.mktemp("helm-home"))


def config_maps(helm: Helm, *args: str) -> list[dict[str, Any]]:
    objects = helm.template(*args)
    return [o for o in objects if o["kind"] == "ConfigMap" and "dashboard" in o["metadata"]["name"]]


def test_the_config_map_holds_the_dashboard_for_grafanas_sidecar(helm: Helm) -> None:
    (config_map,) = config_maps(helm, "--set", "dashboard.enabled=true")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert set(STANDARD_LABELS) <= set(config_map["metadata"]["labels"])
    assert config_map["metadata"]["namespace"] == "troupe-system"
    assert json.loads(config_map["data"]["troupe.json"]) == BOARD
    kubernetes_validate.validate(config_map, kubernetes_validate.latest_version(), strict=True)


def test_the_config_maps_place_labels_and_annotations_are_values(helm: Helm) -> None:
    (config_map,) = config_maps(
        helm,
        *("--set", "dashboard.enabled=true", "--set", "dashboard.namespace=monitoring"),
        *("--set", "dashboard.labels.grafana_dashboard=troupe"),
        *("--set", "dashboard.annotations.grafana_folder=Troupe"),
    )
    assert config_map["metadata"]["namespace"] == "monitoring"
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "troupe"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "Troupe"}


def test_no_config_map_by_default(helm: Helm) -> None:
    assert config_maps(helm) == []


@pytest.mark.parametrize("query", QUERIES, ids=lambda q: f"{q.panel}: {q.expr[:40]}")
def test_every_query_parses_and_reads_exported_series(query: Any) -> None:
    expr = filled(query.expr, job="troupe-operator-metrics", namespace=".*")
    promql_parser.parse(expr)
    read = {metric_name(selector) for selector in selectors(expr)}
    assert read and read <= exported_series(), read - exported_series()


def test_the_parser_refuses_what_prometheus_refuses() -> None:
    with pytest.raises(ValueError):
        promql_parser.parse("sum by (le) (rate(troupe_task_duration_seconds_bucket[5m])")


def test_the_layout_is_one_grid_of_distinct_panels() -> None:
    ids = [panel["id"] for panel in BOARD["panels"]]
    assert len(ids) == len(set(ids))
    cells = {}
    for panel in BOARD["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        cells[panel["title"]] = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
    for (one, a), (other, b) in combinations(cells.items(), 2):
        assert not a & b, (one, other)


def test_every_panel_queries_the_chosen_data_source_and_is_described() -> None:
    text = DOCS.read_text()
    for panel in PANELS:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["description"], panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs)) >= 1, panel["title"]
        assert f"| {panel['title']} |" in text, f"docs/observability.md: no row {panel['title']}"
