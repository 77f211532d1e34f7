"""The chart's alerts and dashboard as the tests read them.

The PrometheusRule comes from the real ``helm template`` (its ``spec`` is a Prometheus rule
file); the dashboard is ``charts/troupe/dashboards/troupe.json``, and its queries are PromQL
once Grafana's variables are filled in. ``promql-parser`` names the series a query reads.
This module evaluates nothing: promtool and a real Prometheus server do that.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import promql_parser
import yaml
from prometheus_client import REGISTRY, CollectorRegistry

import troupe_operator.controller.inventory
import troupe_operator.controller.metrics
import troupe_operator.controller.run_metrics  # noqa: F401  (each registers its metrics)
from tests.support.helm import CHART, Helm
from tests.support.tools import required_tool
from troupe_agent.metrics import ServeMetrics
from troupe_operator.election.metrics import master_status

MONITORING_API = ("--api-versions", "monitoring.coreos.com/v1")
RULES_ON = ("--set", "prometheusRule.enabled=true", *MONITORING_API)
DASHBOARD = CHART / "dashboards" / "troupe.json"
RATE_INTERVAL = "1m"
"""What ``$__rate_interval`` stands for here (Grafana computes it from the scrape interval)."""
LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>\w+)\)$")
VARIABLE = re.compile(r"\$\{?(\w+)\}?")

Object = dict[str, Any]


def prometheus_rule(helm: Helm, *args: str) -> Object:
    """The chart's one PrometheusRule, rendered with the rules on and ``args``."""
    (rule,) = [o for o in helm.template(*RULES_ON, *args) if o["kind"] == "PrometheusRule"]
    return rule


def write_rules(rule: Object, path: Path) -> Path:
    """The rule's ``spec`` as a Prometheus rule file (what the Prometheus Operator loads)."""
    path.write_text(yaml.safe_dump(rule["spec"], sort_keys=False))
    return path


def alerts(rule: Object) -> dict[str, Object]:
    return {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"]}


def prometheus_tool(name: str) -> Path:
    """``promtool`` or the ``prometheus`` server; else the test skips (fails under CI)."""
    return required_tool(name, "the Debian package prometheus, as root")


@dataclass(frozen=True)
class Query:
    """One PromQL query of the dashboard: a panel's target or a variable's selector."""

    panel: str
    expr: str


def dashboard() -> Object:
    loaded: Object = json.loads(DASHBOARD.read_text())
    return loaded


def queries(board: Object) -> list[Query]:
    """Every panel target's query, and the series selector of every ``label_values`` variable."""
    found = [
        Query(panel["title"], target["expr"])
        for panel in board["panels"]
        for target in panel.get("targets", [])
    ]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            match = LABEL_VALUES.match(variable["query"]["query"])
            assert match, variable["query"]
            found.append(Query(f"${variable['name']}", match["selector"]))
    return found


def filled(expr: str, **values: str) -> str:
    """``expr`` with the dashboard's variables replaced: ``values``, then Grafana's own."""
    known = {"__rate_interval": RATE_INTERVAL, **values}

    def value(match: re.Match[str]) -> str:
        name = match[1]
        assert name in known, f"unknown variable ${name} in {expr}"
        return known[name]

    return VARIABLE.sub(value, expr)


def selectors(expr: str) -> list[str]:
    """The series selectors ``expr`` reads, each as a query of its own (``name{matchers}``)."""
    found: list[str] = []

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(str(node))

    promql_parser.walk(promql_parser.parse(expr), visit)
    return found


def metric_name(selector: str) -> str:
    return selector.split("{", 1)[0]


SAMPLE_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
}


def exported_series() -> set[str]:
    """Every series name the operator and the agent pods can export, and Prometheus' ``up``.

    Read from the families their registries describe (a labelled metric has no samples
    until it is first used, but its family is there): the operator's default registry, the
    election's gauge, and the agent pods' own registry.
    """
    election = CollectorRegistry()
    master_status(election)
    names = {"up"}
    for registry in (REGISTRY, election, ServeMetrics().registry):
        for family in registry.collect():
            suffixes = SAMPLE_SUFFIXES.get(family.type, ("",))
            names.update(family.name + suffix for suffix in suffixes)
    return names
