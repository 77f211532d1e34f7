"""A real Prometheus scrapes the real operator and an agent pod, and runs the chart's alerts.

Prometheus (Debian's ``prometheus``) scrapes, every second, the operator process
(``kopf run -m troupe_operator.main`` against the emulator) and serve mode's app (an agent
pod's), with the scrape jobs the Prometheus Operator makes of the chart's ServiceMonitor and
PodMonitor, and evaluates the chart's PrometheusRule as the real ``helm`` renders it. A
Tenant runs two tasks at a time in its namespace: a pipeline whose first model call fails
(one retry), a Workflow whose model cannot be reached (it Fails), one whose Agent does not
exist (its task stays blocked); one status write of the operator fails (a reconcile error);
then a Workflow's task meets two 429s (task mode: its attempts fail and are retried, and the
operator counts the 429s from their reports); the Tenant's budget is then set just above what
was spent; the agent pod's model answers 429.

Then every series that an alert or a dashboard query reads has data, every such query
evaluates without error (and most panels show data), every rule is healthy in the server,
and the alerts this run sets off are pending with the labels they should have (the
Workflow's namespace, not the operator's), while the operator's own alerts stay quiet.

With ``TROUPE_DASHBOARD_PNG=<path>`` (and matplotlib installed) the dashboard's panels, as
this server answers them over the run, are drawn into that PNG: docs/images/dashboard.png.
"""

from __future__ import annotations

import os
import pathlib
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.integration.agent_server import RunningServer, serving
from tests.integration.test_tenants import create, tenant, wait_ready
from tests.integration.troupe_driver import (
    GROUP,
    VERSION,
    Troupe,
    agent,
    reply_naming_the_task,
    workflow,
)
from tests.support.emulator import EmulatedCluster
from tests.support.helm import helm_or_skip
from tests.support.kube.faults import Target as Aim
from tests.support.loopback import free_port
from tests.support.monitoring import (
    RULES_ON,
    Query,
    alerts,
    dashboard,
    filled,
    prometheus_tool,
    queries,
    selectors,
    write_rules,
)
from tests.support.openai_stub import Fault, OpenAIStub
from tests.support.prometheus_server import (
    Prometheus,
    Target,
    agents_job,
    operator_job,
    prometheus,
)
from tests.support.waiting import wait_for
from troupe_agent.agent import Agent, AgentOptions
from troupe_agent.metrics import ServeMetrics
from troupe_agent.serve import create_app
from troupe_operator.api import AgentSpec

NAMESPACE = "observed-dev"
TENANT = "observed-team"
RELEASE_NAMESPACE = "troupe-system"
WAIT = 120.0
LEASES = {
    "TROUPE_LEASE_DURATION_SECONDS": "15",
    "TROUPE_RENEW_DEADLINE_SECONDS": "10",
    "TROUPE_RETRY_PERIOD_SECONDS": "2",
}
"""client-go's defaults: a loaded machine must not cost the leader its Lease."""
MONITORS = ("--set", "serviceMonitor.enabled=true", "--set", "podMonitor.enabled=true")
SLOTS = {"maxConcurrentTasks": 2}
"""Three root tasks are ready at once: one waits for the Tenant's slot (tenant_limit)."""
EXPECTED_PENDING = {"TroupeTasksBlocked", "TroupeLLMRateLimited", "TroupeTenantBudgetNearlySpent"}
QUIET = {"TroupeOperatorDown", "TroupeOperatorNoLeader"}
NEVER = "0001-01-01"
"""The lastEvaluation of a rule not evaluated yet."""
ATTEMPTS = 10
"""Attempts of one model call of the agent pod; each failed one counts as an LLM error."""


@pytest.fixture
def agent_pod() -> Iterator[tuple[RunningServer, OpenAIStub]]:
    """Serve mode's app (an agent pod's) on loopback, with a model stub of its own."""
    with OpenAIStub() as model:
        spec = AgentSpec.model_validate(
            {
                "role": "executor",
                "model": {"name": "stub-model", "baseURL": model.base_url, "maxRetries": 9},
            }
        )

        def build(metrics: ServeMetrics) -> Agent:
            return Agent("writer", spec, None, AgentOptions([metrics], sleep=lambda _: None))

        with serving(create_app(build, auth=None)) as server:
            yield server, model


def apply(troupe: Troupe, *bodies: dict[str, Any]) -> None:
    for body in bodies:
        body["metadata"]["namespace"] = NAMESPACE
        plural = body["kind"].lower() + "s"
        troupe.custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, plural, body)


def status(troupe: Troupe, name: str) -> dict[str, Any]:
    body: dict[str, Any] = troupe.custom.get_namespaced_custom_object(
        GROUP, VERSION, NAMESPACE, "workflows", name
    )
    return body.get("status") or {}


def has_data(prom: Prometheus, expr: str) -> list[dict[str, Any]] | None:
    return prom.query(expr) or None


def test_prometheus_scrapes_the_operator_and_evaluates_every_alert_and_panel(
    troupe: Troupe,
    emulator: EmulatedCluster,
    kubeconfig: pathlib.Path,
    agent_pod: tuple[RunningServer, OpenAIStub],
    tmp_path: pathlib.Path,
) -> None:
    binary = prometheus_tool("prometheus")
    objects = helm_or_skip(tmp_path / "helm").template(*RULES_ON, *MONITORS)
    (rule,) = [o for o in objects if o["kind"] == "PrometheusRule"]
    server, model = agent_pod
    started = time.time()
    with OpenAIStub(reply=reply_naming_the_task) as stub:
        create(troupe, tenant(TENANT, [NAMESPACE], limits=SLOTS))
        with troupe.operator_process(kubeconfig, "op-observed", LEASES) as operator:
            operator_pod = Target(f"127.0.0.1:{operator.metrics_port}", RELEASE_NAMESPACE, "op-0")
            agent_pod_ = Target(server.url.removeprefix("http://"), NAMESPACE, "writer-0")
            jobs = [operator_job(objects, operator_pod), agents_job(objects, agent_pod_)]
            rule_file = write_rules(rule, tmp_path / "troupe.rules.yaml")
            with prometheus(binary, tmp_path, jobs, [rule_file]) as prom:
                wait_ready(troupe, TENANT)
                wait_for(lambda: has_data(prom, "up == 1"), timeout=WAIT, what="a first scrape")
                run_three_workflows(troupe, emulator, stub)
                rate_limit_a_task(prom, troupe, stub)
                spend_nearly_all_of_the_budget(troupe)
                rate_limit_the_agent_pod(prom, server, model)

                job = jobs[0]["job_name"]
                panels = [
                    Query(q.panel, filled(q.expr, job=job, namespace=".*"))
                    for q in queries(dashboard())
                ]
                exprs = [alert["expr"] for alert in alerts(rule).values()]
                exprs += [panel.expr for panel in panels]
                for selector in sorted({s for expr in exprs for s in selectors(expr)}):
                    wait_for(lambda: has_data(prom, selector), timeout=WAIT, what=selector)  # noqa: B023
                answered = {expr: prom.query(expr) for expr in exprs}  # raises on an error
                assert_the_rules_run_and_this_runs_alerts_are_pending(prom)
                assert operator.exits == [], f"the operator exited mid-run: {operator.exits}"
                if os.environ.get("TROUPE_DASHBOARD_PNG"):
                    from tests.support.dashboard_png import draw

                    path = pathlib.Path(os.environ["TROUPE_DASHBOARD_PNG"])
                    draw(prom, dashboard(), job, started, time.time(), path)
    empty = sorted(panel.panel for panel in panels if not answered[panel.expr])
    assert len(empty) <= len(panels) // 4, f"dashboard queries without data: {empty}"


def run_three_workflows(troupe: Troupe, emulator: EmulatedCluster, stub: OpenAIStub) -> None:
    """A pipeline that retries a task and Succeeds, one that Fails, one blocked for good."""
    stub.inject(Fault.server_error())  # the first model call: its task runs twice
    writes = Aim("troupe-operator", {"patch"}, "workflows/status")
    emulator.faults.fail(writes, 500, count=1)  # one reconcile raises, and is retried
    unreachable = f"http://127.0.0.1:{free_port()}/v1"
    pipeline = [  # two roots run at once: either may meet the 500, so each may retry
        {"name": "first", "retries": 1},
        {"name": "second", "retries": 1},
        {"name": "joined", "retries": 1, "dependsOn": ["first"]},
    ]
    apply(
        troupe,
        agent("worker", stub.base_url),
        agent("offline", unreachable),
        workflow("pipeline", pipeline),
        workflow("doomed", [{"name": "call", "agent": "offline"}]),
        workflow("orphan", [{"name": "lost", "agent": "nobody"}]),
    )
    for name, phase in (("pipeline", "Succeeded"), ("doomed", "Failed")):
        wait_for(
            lambda: status(troupe, name).get("phase") in ("Succeeded", "Failed"),  # noqa: B023
            timeout=WAIT,
            what=f"{name} to end",
        )
        assert status(troupe, name)["phase"] == phase, status(troupe, name)
    assert emulator.faults.injected["fail"] == 1


def rate_limit_a_task(prom: Prometheus, troupe: Troupe, stub: OpenAIStub) -> None:
    """Two 429s in task mode: attempts 1 and 2 fail (maxRetries 0), attempt 3 succeeds.

    The operator counts them from the attempts' reports; the 429 series of the Agent's model
    was created at 0 with its first counted calls (the pipeline's), so rate() sees both.
    """
    stub.inject(Fault.rate_limited(retry_after=0), Fault.rate_limited(retry_after=0))
    apply(troupe, workflow("throttled", [{"name": "limited", "retries": 2}]))
    wait_for(
        lambda: status(troupe, "throttled").get("phase") in ("Succeeded", "Failed"),
        timeout=WAIT,
        what="throttled to end",
    )
    limited = status(troupe, "throttled")
    assert limited["phase"] == "Succeeded", limited
    assert limited["tasks"]["limited"]["calls"]["failed"] == {"429": 2}
    query = 'increase(troupe_task_llm_errors_total{status="429"}[5m]) > 1'
    wait_for(lambda: has_data(prom, query), timeout=WAIT, what=query)


def spend_nearly_all_of_the_budget(troupe: Troupe) -> None:
    """A budget of the tokens used so far plus 5%: TroupeTenantBudgetNearlySpent's condition."""
    used = sum(
        int(status(troupe, name)["usage"]["totalTokens"]) for name in ("pipeline", "throttled")
    )
    patch = {"spec": {"limits": {**SLOTS, "tokenBudget": used + used // 20 + 1}}}
    troupe.custom.patch_cluster_custom_object(GROUP, VERSION, "tenants", TENANT, patch)


def invoke(server: RunningServer) -> int:
    return httpx.post(f"{server.url}/v1/invoke", json={"prompt": "x"}, timeout=30).status_code


def rate_limit_the_agent_pod(prom: Prometheus, server: RunningServer, model: OpenAIStub) -> None:
    """429s before and after a scrape (a series' first sample is no increase), then a success.

    Three calls' worth of 429s after the first sample: 30 in the alert's 5-minute window, 0.1
    per second, over its 0.05.
    """
    for calls, seen in ((1, ATTEMPTS), (3, 4 * ATTEMPTS)):
        for _ in range(calls):
            model.inject(*[Fault.rate_limited(retry_after=0)] * ATTEMPTS)
            assert invoke(server) == 503
        query = f'troupe_llm_errors_total{{status="429"}} >= {seen}'
        wait_for(lambda: has_data(prom, query), timeout=WAIT, what=query)  # noqa: B023
    assert invoke(server) == 200


def assert_the_rules_run_and_this_runs_alerts_are_pending(prom: Prometheus) -> None:
    def evaluated() -> list[dict[str, Any]] | None:
        rules = prom.rules()
        pending = {a["labels"]["alertname"] for a in prom.alerts()}
        done = all(not r["lastEvaluation"].startswith(NEVER) for r in rules)
        return rules if done and pending >= EXPECTED_PENDING else None

    rules = wait_for(evaluated, timeout=WAIT, interval=0.5, what=f"alerts {EXPECTED_PENDING}")
    assert [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"] == []
    active = {a["labels"]["alertname"]: a["labels"] for a in prom.alerts()}
    assert not QUIET & set(active), active
    assert active["TroupeTasksBlocked"]["namespace"] == NAMESPACE  # not the operator's
    assert active["TroupeTasksBlocked"]["reason"] == "agent_not_found"
    assert active["TroupeLLMRateLimited"]["namespace"] == NAMESPACE
    assert active["TroupeTenantBudgetNearlySpent"]["tenant"] == TENANT
