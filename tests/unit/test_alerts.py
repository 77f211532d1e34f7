"""The chart's PrometheusRule, rendered by the real ``helm`` and tested by ``promtool``.

Its ``spec`` is written out as a rule file; ``promtool check rules`` accepts it and
``promtool test rules`` runs one table row per case: input series, an evaluation time, and
the alert expected to fire (its labels, and its description as Prometheus renders it) or not.
Every alert has a row that fires and one that does not, a ``for``, a severity, a runbook
section in docs/observability.md, and reads only series the operator or the agent pods
export. The values shape the rules; the rule passes the Prometheus Operator's validator.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.helm import CHART, ROOT, Helm, helm_or_skip
from tests.support.monitoring import (
    MONITORING_API,
    alerts,
    exported_series,
    metric_name,
    prometheus_rule,
    prometheus_tool,
    selectors,
    write_rules,
)
from tests.unit.test_chart import STANDARD_LABELS, validate_monitors

DOCS = ROOT / "docs" / "observability.md"
RUNBOOKS = "https://github.com/troupe-dev/troupe/blob/main/docs/observability.md"
JOB = "troupe-operator-metrics"
AGENTS = "research-dev/troupe-agents"
"""The job label of the PodMonitor's scrapes: <its namespace>/<its name>."""
SEVERITIES = {"critical", "warning"}
RESEARCH = {"namespace": "research-dev"}


def series(metric: str, job: str = JOB, **labels: str) -> str:
    pairs = {"job": job, **labels}
    return metric + "{" + ",".join(f'{k}="{v}"' for k, v in pairs.items()) + "}"


def replicas(metric: str, a: str, b: str, **labels: str) -> dict[str, str]:
    """``metric`` of the operator's two replicas (instances a and b)."""
    return {series(metric, instance="a", **labels): a, series(metric, instance="b", **labels): b}


def reconciles(errors: int) -> dict[str, str]:
    """The workflow controller reconciling 60 times a minute, ``errors`` of them raising."""
    at = {"controller": "workflow"}
    return {
        series("controller_runtime_reconcile_total", **at, result="success"): f"0+{60 - errors}x30",
        series("controller_runtime_reconcile_total", **at, result="error"): f"0+{errors}x30",
        series("controller_runtime_reconcile_errors_total", **at): f"0+{errors}x30",
    }


def finished(failed: str, succeeded: str) -> dict[str, str]:
    """research-dev's counts of Workflows ended, per phase."""
    name = "troupe_workflows_finished_total"
    return {
        series(name, **RESEARCH, phase="Failed"): failed,
        series(name, **RESEARCH, phase="Succeeded"): succeeded,
    }


def waits(reason: str, under_15_minutes: str) -> dict[str, str]:
    """research-dev's queue-wait histogram: one task a minute, waiting under 15 or 30 minutes."""
    name = "troupe_task_queue_wait_seconds_bucket"
    counts = {"900": under_15_minutes, "1800": "0+1x60", "+Inf": "0+1x60"}
    return {series(name, **RESEARCH, reason=reason, le=le): v for le, v in counts.items()}


def budget(left: int) -> dict[str, str]:
    """research-team's budget of a million tokens, ``left`` of them left."""
    return {
        series("troupe_tenant_budget_tokens", tenant="research-team"): "1000000x10",
        series("troupe_tenant_budget_remaining_tokens", tenant="research-team"): f"{left}x10",
    }


def llm_calls(
    serve: tuple[int, int] = (0, 0), task: tuple[int, int] = (0, 0), status: str = "429"
) -> dict[str, str]:
    """research-dev's calls to gpt-4o per minute, (all, failed with ``status``), of an Agent's
    pod (serve mode) and of Workflow tasks (task mode, counted by the operator)."""
    model = {**RESEARCH, "model": "gpt-4o"}
    pod = {**model, "pod": "writer-0"}
    tasks = {**model, "agent": "writer"}
    return {
        series("troupe_llm_calls_total", AGENTS, **pod): f"0+{serve[0]}x30",
        series("troupe_llm_errors_total", AGENTS, **pod, status=status): f"0+{serve[1]}x30",
        series("troupe_task_llm_calls_total", **tasks): f"0+{task[0]}x30",
        series("troupe_task_llm_errors_total", **tasks, status=status): f"0+{task[1]}x30",
    }


def waiting(reason: str, tasks: int) -> dict[str, str]:
    return {series("troupe_tasks_waiting", **RESEARCH, reason=reason): f"{tasks}x20"}


@dataclass(frozen=True)
class Case:
    alert: str
    what: str
    input: dict[str, str]
    """Series to values, in promtool's expanding notation (1-minute steps)."""
    at: str
    fires: dict[str, str] | None = None
    """The alert's labels besides alertname and severity; None: it must not fire."""
    description: str | None = None
    """The description as rendered; None: the rule's own (it has no template)."""


LEADER = "leader_election_master_status"
NO_LEADER = "replicas report leading the Lease troupe-operator (one should); without a leader"
OPERATOR_LEASE = {"name": "troupe-operator"}
CASES = [
    Case("TroupeOperatorDown", "both replicas down", replicas("up", "0x10", "0x10"), "6m", {}),
    Case("TroupeOperatorDown", "no target at all", {'up{job="other"}': "1x10"}, "6m", {}),
    Case("TroupeOperatorDown", "one replica up", replicas("up", "1x10", "0x10"), "6m"),
    Case(
        "TroupeOperatorNoLeader",
        "no replica leads",
        replicas(LEADER, "0x10", "0x10", **OPERATOR_LEASE),
        "6m",
        OPERATOR_LEASE,
        f"0 {NO_LEADER} nothing is reconciled.",
    ),
    Case(
        "TroupeOperatorNoLeader",
        "two replicas lead",
        replicas(LEADER, "1x10", "1x10", **OPERATOR_LEASE),
        "6m",
        OPERATOR_LEASE,
        f"2 {NO_LEADER} nothing is reconciled.",
    ),
    Case(
        "TroupeOperatorNoLeader",
        "one leader; an Agent's supervisor Lease is not the operator's",
        {
            **replicas(LEADER, "1x10", "0x10", **OPERATOR_LEASE),
            series(LEADER, job=AGENTS, name="writer-supervisor"): "0x10",
        },
        "6m",
    ),
    Case(
        "TroupeReconcileErrors",
        "a fifth of the reconciles raise",
        reconciles(errors=12),
        "25m",
        {"controller": "workflow"},
        "20% of the workflow controller's reconciles have raised for 15 minutes "
        "(each is retried with backoff).",
    ),
    Case("TroupeReconcileErrors", "one in twenty raises", reconciles(errors=3), "25m"),
    Case(
        "TroupeWorkflowFailureRatio",
        "half the runs fail",
        finished(failed="0+1x100", succeeded="0+1x100"),
        "80m",
        RESEARCH,
        "50% of the Workflows that ended in namespace research-dev in the last hour Failed.",
    ),
    Case(
        "TroupeWorkflowFailureRatio",
        "every run fails, but only two ran",
        finished(failed="0x10 1x10 2x80", succeeded="0x102"),
        "80m",
    ),
    Case(
        "TroupeWorkflowFailureRatio",
        "one run in ten fails",
        finished(failed="0+1x100", succeeded="0+9x100"),
        "80m",
    ),
    Case(
        "TroupeTasksWaitingTooLong",
        "tasks wait 15 to 30 minutes for a Tenant's slot",
        waits("tenant_limit", under_15_minutes="0x60"),
        "50m",
        RESEARCH,
        "In namespace research-dev, one task in ten held back by its Tenant's "
        "maxConcurrentTasks waited longer than 28m 30s (30-minute window).",
    ),
    Case(
        "TroupeTasksWaitingTooLong",
        "tasks wait under 15 minutes",
        waits("tenant_limit", under_15_minutes="0+1x60"),
        "50m",
    ),
    Case(
        "TroupeTasksWaitingTooLong",
        "long waits for the Workflow's own parallelism",
        waits("parallelism", under_15_minutes="0x60"),
        "50m",
    ),
    Case(
        "TroupeTasksBlocked",
        "tasks wait for a missing Agent",
        waiting("agent_not_found", tasks=2),
        "16m",
        {**RESEARCH, "reason": "agent_not_found"},
        "2 ready tasks in namespace research-dev have been held back for 15 minutes by "
        "agent_not_found.",
    ),
    Case(
        "TroupeTasksBlocked",
        "a task waits for an Agent its selector matches",
        waiting("no_matching_agent", tasks=1),
        "16m",
        {**RESEARCH, "reason": "no_matching_agent"},
        "1 ready tasks in namespace research-dev have been held back for 15 minutes by "
        "no_matching_agent.",
    ),
    Case("TroupeTasksBlocked", "tasks wait for a slot", waiting("tenant_limit", tasks=5), "16m"),
    Case(
        "TroupeTenantBudgetNearlySpent",
        "5% left",
        budget(left=50_000),
        "6m",
        {"tenant": "research-team"},
        "Tenant research-team has 5% of its token budget left; once it is spent its new tasks "
        "wait (TokenBudgetExceeded).",
    ),
    Case("TroupeTenantBudgetNearlySpent", "half left", budget(left=500_000), "6m"),
    Case(
        "TroupeLLMRateLimited",
        "a fifth of the calls get 429s, serve and task modes together",
        llm_calls(serve=(40, 10), task=(20, 2)),
        "16m",
        {**RESEARCH, "model": "gpt-4o"},
        "20% of the calls to model gpt-4o from namespace research-dev (Agents' pods and "
        "Workflow tasks) get HTTP 429 replies.",
    ),
    Case(
        "TroupeLLMRateLimited",
        "only Workflow tasks call the model, and a third get 429s",
        llm_calls(task=(30, 10)),
        "16m",
        {**RESEARCH, "model": "gpt-4o"},
        "33.33% of the calls to model gpt-4o from namespace research-dev (Agents' pods and "
        "Workflow tasks) get HTTP 429 replies.",
    ),
    Case(
        "TroupeLLMRateLimited",
        "many 429s, a small share of many calls",
        llm_calls(serve=(600, 12), task=(600, 12)),
        "16m",
    ),
    Case(
        "TroupeLLMRateLimited",
        "many errors, none a 429",
        llm_calls((60, 60), (60, 60), "500"),
        "16m",
    ),
]


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return helm_or_skip(tmp_path_factory.mktemp("helm-home"))


@pytest.fixture(scope="module")
def rule(helm: Helm) -> dict[str, Any]:
    return prometheus_rule(helm)


@pytest.fixture(scope="module")
def rule_file(rule: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_rules(rule, tmp_path_factory.mktemp("rules") / "troupe.rules.yaml")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(prometheus_tool("promtool")), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_promtool_checks_the_rules(rule_file: Path) -> None:
    checked = promtool("check", "rules", str(rule_file))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 8 rules found" in checked.stdout


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.alert}: {c.what}")
def test_promtool_unit_test(
    case: Case, rule: dict[str, Any], rule_file: Path, tmp_path: Path
) -> None:
    alert = alerts(rule)[case.alert]
    expected = []
    if case.fires is not None:
        annotations = dict(alert["annotations"])
        if case.description is not None:
            annotations["description"] = case.description
        labels = {"severity": alert["labels"]["severity"], **case.fires}
        expected.append({"exp_labels": labels, "exp_annotations": annotations})
    test = {
        "rule_files": [str(rule_file)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in case.input.items()],
                "alert_rule_test": [
                    {"eval_time": case.at, "alertname": case.alert, "exp_alerts": expected}
                ],
            }
        ],
    }
    path = tmp_path / "test.yaml"
    path.write_text(yaml.safe_dump(test, sort_keys=False))
    tested = promtool("test", "rules", str(path))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_has_a_case_that_fires_and_one_that_does_not(rule: dict[str, Any]) -> None:
    firing = {case.alert for case in CASES if case.fires is not None}
    quiet = {case.alert for case in CASES if case.fires is None}
    assert firing == quiet == set(alerts(rule))


def test_every_alert_waits_has_a_severity_and_a_runbook_section(rule: dict[str, Any]) -> None:
    headings = set(re.findall(r"^#+ (\w+)$", DOCS.read_text(), re.MULTILINE))
    for name, alert in alerts(rule).items():
        assert re.fullmatch(r"\d+m", alert["for"]), name
        assert alert["labels"]["severity"] in SEVERITIES, name
        assert alert["annotations"]["runbook_url"] == f"{RUNBOOKS}#{name.lower()}"
        assert name in headings, f"docs/observability.md has no runbook section {name}"
        assert alert["annotations"]["summary"] and alert["annotations"]["description"], name


def test_the_alerts_read_only_series_that_are_exported(rule: dict[str, Any]) -> None:
    exported = exported_series()
    for name, alert in alerts(rule).items():
        read = {metric_name(selector) for selector in selectors(alert["expr"])}
        assert read <= exported, (name, read - exported)


def test_the_rule_passes_the_prometheus_operators_validator(rule: dict[str, Any]) -> None:
    validate_monitors([rule])


def test_values_shape_the_rules(helm: Helm, tmp_path: Path) -> None:
    values = {
        "prometheusRule": {
            "labels": {"release": "kube-prometheus-stack"},
            "alertLabels": {"team": "platform"},
            "runbookURL": "https://runbooks.example/troupe",
            "operatorSelector": 'job="troupe", cluster="eu-1"',
            "thresholds": {"workflowFailureRatio": 0.5, "taskWaitSeconds": 300},
        }
    }
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    rule = prometheus_rule(helm, "--values", str(path))
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert set(STANDARD_LABELS) <= set(rule["metadata"]["labels"])
    rules = alerts(rule)
    for name, alert in rules.items():
        assert alert["labels"]["team"] == "platform", name
        assert (
            alert["annotations"]["runbook_url"] == f"https://runbooks.example/troupe#{name.lower()}"
        )
        assert JOB not in alert["expr"], name
    assert '{job="troupe", cluster="eu-1"} == 1' in rules["TroupeOperatorDown"]["expr"]
    assert "> 0.5\n" in rules["TroupeWorkflowFailureRatio"]["expr"]
    assert rules["TroupeTasksWaitingTooLong"]["expr"].endswith("> 300")


@pytest.mark.parametrize(
    ("args", "alert_names"),
    [
        (["--set", "prometheusRule.enabled=true"], None),  # the cluster has no Prometheus Operator
        ([*MONITORING_API], None),  # off by default
        (
            [
                *("--set", "prometheusRule.enabled=true", *MONITORING_API),
                *("--set", "replicaCount=1", "--set", "leaderElection.enabled=false"),
            ],
            8 - 1,  # no Lease, no leader alert
        ),
    ],
)
def test_when_the_rule_is_rendered(helm: Helm, args: list[str], alert_names: int | None) -> None:
    rules = [o for o in helm.template(*args) if o["kind"] == "PrometheusRule"]
    if alert_names is None:
        assert rules == []
    else:
        (rule,) = rules
        assert len(alerts(rule)) == alert_names
        assert "TroupeOperatorNoLeader" not in alerts(rule)


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ("prometheusRule.thresholds.workflowFailureRatio=2", "workflowFailureRatio"),
        ("prometheusRule.runbookURL=https://x.example/page#alerts", "runbookURL"),
        ("prometheusRule.thresholds.bogus=1", "additional properties 'bogus' not allowed"),
        ("dashboard.namespace=Not_A_Namespace", "namespace"),
    ],
)
def test_the_schema_refuses_bad_monitoring_values(helm: Helm, setting: str, complaint: str) -> None:
    result = helm.run("template", "troupe", str(CHART), "--set", setting)
    assert result.returncode != 0
    assert "schema" in result.stderr and complaint in result.stderr, result.stderr
