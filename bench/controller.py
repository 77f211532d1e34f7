"""Workflow controller throughput and cost, with tasks that take no time.

Runs the real operator (``python -m kopf run --standalone --all-namespaces -m
troupe_operator.main``) as a separate process against the harness's API emulator, so its
CPU seconds (``/proc/<pid>/stat``) and peak RSS (``VmHWM`` in ``/proc/<pid>/status``) are
its own. One replica: no leader election (``TROUPE_LEADER_ELECT=false``), no metrics
endpoint (``TROUPE_METRICS_PORT=0``), and ``TROUPE_UNTENANTED_NAMESPACES=Allow`` but in
``tenant`` (the default, ``Refuse``: its Workflows start only once the Tenant has adopted
the namespace). Task Jobs are finished at once by ``instant_jobs.InstantKubelet``, which
also counts the task Jobs unfinished at once; the emulator (``counting_cluster``) counts
the operator's API requests apart from the bench's. Each scenario gets a fresh emulator and
a fresh operator process.

Scenarios (``--scenarios``, comma-separated; all by default):

- ``batch``: N workflows x M tasks created at once (``--workflows``, ``--tasks``,
  ``--shape``; default 100 x 10, mixed DAG);
- ``live``: 1000 workflows x 10 tasks (mixed DAG), the "1000 live workflows" case;
- ``wide``: one workflow of 1000 tasks: a root, 998 tasks depending on it, one joining all;
- ``steady``: 1000 live workflows x 10 tasks (mixed DAG) whose Jobs the instant kubelet
  finishes at a steady 50 per second (below capacity), in the order they appeared: the
  dispatch latency under a steady load, not a burst's queueing;
- ``agent``: ``batch`` (same options) on an Agent whose ``model.maxConcurrency`` is 20
  (``--max-concurrent-tasks``), so the Agent gate counts and shares on every decision; it
  fails if the instant kubelet ever sees more task Jobs unfinished at once than the cap.
- ``tenant``: ``batch`` (same options) in a namespace of a Tenant whose limits the operator
  enforces: ``maxConcurrentTasks`` 20 (``--max-concurrent-tasks``) and a ``tokenBudget``
  never reached, so the gate counts both on every decision. The Tenant is created before
  anything else in the namespace (it adopts only an empty one), and the scenario starts
  once the operator has labelled the namespace for it. It fails if the instant kubelet
  ever sees more task Jobs unfinished at once than the limit.

Shapes: ``mixed`` is a root, layers of up to three tasks each depending on every task of the
layer before, and a final task joining the last layer (10 tasks: 1, 3, 3, 2, 1);
``chain`` is a serial chain.

Dispatch latency is, for each task with dependencies, the time from the instant kubelet
marking the last of its upstream Jobs Complete to the ADDED event of its own Job, both
seen in this process. Prints Markdown; ``docs/performance.md`` ("Workflow controller")
quotes it.

    .venv/bin/python bench/controller.py [--quick] [--scenarios batch,live,wide,steady,tenant,agent]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, for tests.support
from counting_cluster import CountingCluster, RequestKey
from instant_jobs import InstantKubelet, check, session, watch_events
from tests.support.waiting import wait_for
from troupe_operator.api import API_VERSION
from troupe_operator.tenants import LABEL_TENANT, TenantRef

REPO = Path(__file__).resolve().parents[1]
NAMESPACE = "bench"
AGENT = "worker"
TENANT = "bench"
TENANT_TOKEN_BUDGET = 10**12
"""Never reached (20 tokens per task), but counted on every decision."""
CONCURRENCY_HELD = frozenset({"TenantConcurrencyLimit", "AgentConcurrencyLimit"})
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
FINISHED_PHASES = {"Succeeded", "Failed", "Error"}

TARGET_TASKS_PER_SECOND = 50.0
TARGET_STEADY_P50_MS = 50.0
TARGET_STEADY_P99_MS = 250.0
TARGET_CPU_MS_PER_TASK = 2.5
TARGET_WRITES_PER_TASK = 2.5
TARGET_EVENTS_PER_TASK = 1.0
TARGET_RSS_MIB = 150.0
TARGET_STATUS_BYTES = 256 * 1024

Dag = dict[str, list[str]]  # task -> the tasks it depends on


# -- workflow shapes -------------------------------------------------------------


def _name(index: int, width: int) -> str:
    return f"t{index:0{width}d}"


def chain(tasks: int) -> Dag:
    width = len(str(tasks - 1))
    return {_name(i, width): [_name(i - 1, width)] if i else [] for i in range(tasks)}


def mixed(tasks: int) -> Dag:
    """Root, layers of up to three tasks each depending on all of the layer before, join."""
    if tasks < 3:
        return chain(tasks)
    width = len(str(tasks - 1))
    layers: list[list[str]] = [[_name(0, width)]]
    index = 1
    while index < tasks - 1:
        size = min(3, tasks - 1 - index)
        layers.append([_name(i, width) for i in range(index, index + size)])
        index += size
    layers.append([_name(tasks - 1, width)])
    dag: Dag = {layers[0][0]: []}
    for before, layer in itertools.pairwise(layers):
        dag.update({task: list(before) for task in layer})
    return dag


def wide(tasks: int) -> Dag:
    """A root, ``tasks - 2`` tasks depending on it, and one task depending on all of those."""
    width = len(str(tasks - 1))
    root, join = _name(0, width), _name(tasks - 1, width)
    middle = [_name(i, width) for i in range(1, tasks - 1)]
    return {root: [], **{task: [root] for task in middle}, join: middle}


SHAPES: dict[str, Callable[[int], Dag]] = {"mixed": mixed, "chain": chain, "wide": wide}


def workflow_manifest(name: str, dag: Dag) -> dict[str, Any]:
    tasks = []
    for task, deps in dag.items():
        prompt = (
            f"Carry on with {{{{ inputs.topic }}}} from: {{{{ tasks.{deps[0]}.output }}}}"
            if deps
            else "Start on {{ inputs.topic }}."
        )
        tasks.append({"name": task, "agent": AGENT, "prompt": prompt, "dependsOn": deps})
    return {
        "apiVersion": API_VERSION,
        "kind": "Workflow",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"inputs": {"topic": "the benchmark"}, "tasks": tasks},
    }


@dataclass(frozen=True)
class Scenario:
    name: str
    workflows: int
    tasks: int
    shape: str
    timeout: float
    tasks_per_second: float | None = None
    """Rate at which Jobs are finished; None finishes each one at once."""
    tenant_limit: int | None = None
    """The namespace's Tenant's ``limits.maxConcurrentTasks``; None: no Tenant."""
    agent_limit: int | None = None
    """The Agent's ``model.maxConcurrency``; None: uncapped."""

    @property
    def limit(self) -> tuple[str, int] | None:
        """The cap on unfinished task Jobs the bench checks, and what sets it."""
        if self.tenant_limit is not None:
            return "the Tenant's limits.maxConcurrentTasks", self.tenant_limit
        if self.agent_limit is not None:
            return "the Agent's model.maxConcurrency", self.agent_limit
        return None

    @property
    def dag(self) -> Dag:
        return SHAPES[self.shape](self.tasks)

    @property
    def total_tasks(self) -> int:
        return self.workflows * self.tasks


# -- the operator process --------------------------------------------------------


class OperatorProcess:
    """``kopf run`` of the real operator, pointed at the emulator by KUBECONFIG."""

    def __init__(
        self, kubeconfig: Path, log: Path, module: str, resync: float, untenanted: str
    ) -> None:
        env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "TROUPE_RESYNC_SECONDS": str(resync),
            "TROUPE_AGENT_IMAGE": "troupe-agent:bench",
            "TROUPE_UNTENANTED_NAMESPACES": untenanted,
            "TROUPE_LEADER_ELECT": "false",
            "TROUPE_METRICS_PORT": "0",
        }
        self.log = log
        self._log_file = log.open("wb")
        command = [sys.executable, "-m", "kopf", "run", "--standalone", "--all-namespaces"]
        self.process = subprocess.Popen(
            [*command, "-m", module],
            env=env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )

    def cpu_seconds(self) -> float:
        """User + system CPU time so far (fields 14 and 15 of ``/proc/<pid>/stat``)."""
        stat = Path(f"/proc/{self.process.pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def peak_rss_mib(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmHWM in /proc status")

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            tail = self.log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"the operator exited with {self.process.returncode}:\n{tail}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self._log_file.close()


def wait_until_watching(cluster: CountingCluster, operator: OperatorProcess) -> None:
    """Until kopf watches Workflows, Jobs and Agents (it is then ready for events)."""

    def watching() -> bool:
        operator.check_alive()
        watched = {key.resource for key in cluster.counts() if key.method == "WATCH"}
        return {"workflows", "jobs", "agents"} <= watched

    wait_for(watching, timeout=60, interval=0.1, what="the operator to start its watches")


def tenant_manifest(limit: int) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "Tenant",
        "metadata": {"name": TENANT},
        "spec": {
            "namespaces": [NAMESPACE],
            "limits": {"maxConcurrentTasks": limit, "tokenBudget": TENANT_TOKEN_BUDGET},
        },
    }


def agent_manifest(max_concurrency: int | None = None) -> dict[str, Any]:
    model: dict[str, Any] = {"name": "bench-model"}
    if max_concurrency is not None:
        model["maxConcurrency"] = max_concurrency
    return {
        "apiVersion": API_VERSION,
        "kind": "Agent",
        "metadata": {"name": AGENT, "namespace": NAMESPACE},
        "spec": {"role": "executor", "model": model},
    }


def _one(cluster: CountingCluster, api_version: str, plural: str, name: str) -> dict[str, Any]:
    found = cluster.objects(api_version, plural)
    return next((o for o in found if o["metadata"]["name"] == name), {"metadata": {}})


def wait_until_tenanted(cluster: CountingCluster, operator: OperatorProcess) -> None:
    """Until the Tenant controller has labelled the namespace and made the Tenant Active."""
    label = TenantRef(TENANT, "").label

    def tenanted() -> bool:
        operator.check_alive()
        namespace = _one(cluster, "v1", "namespaces", NAMESPACE)
        tenant = _one(cluster, API_VERSION, "tenants", TENANT)
        labelled = (namespace["metadata"].get("labels") or {}).get(LABEL_TENANT) == label
        return labelled and (tenant.get("status") or {}).get("phase") == "Active"

    wait_for(tenanted, timeout=60, interval=0.1, what=f"Tenant {TENANT} to adopt {NAMESPACE}")


def wait_until_agent_seen(cluster: CountingCluster, operator: OperatorProcess) -> None:
    """Until the Agent controller has written the Agent's status (it is in kopf's index)."""

    def seen() -> bool:
        operator.check_alive()
        agent = _one(cluster, API_VERSION, "agents", AGENT)
        return bool((agent.get("status") or {}).get("phase"))

    wait_for(seen, timeout=60, interval=0.1, what=f"the operator to see Agent {AGENT}")


# -- driving one scenario ----------------------------------------------------------


@dataclass
class Progress:
    """Workflow phases as the bench's own watch sees them."""

    expected: int
    phases: dict[str, str] = field(default_factory=dict)
    statuses: dict[str, dict[str, Any]] = field(default_factory=dict)
    status_bytes: dict[str, int] = field(default_factory=dict)
    held_back: set[str] = field(default_factory=set)
    """Workflows seen waiting for a slot of their Tenant (Ready reason TenantConcurrencyLimit)."""
    done: asyncio.Event = field(default_factory=asyncio.Event)
    finished_at: float = 0.0

    def seen(self, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        status = obj.get("status") or {}
        self.phases[name] = status.get("phase") or ""
        if any(c.get("reason") in CONCURRENCY_HELD for c in status.get("conditions") or ()):
            self.held_back.add(name)
        self.statuses[name] = status
        if self.phases[name] in FINISHED_PHASES:
            self.status_bytes[name] = len(json.dumps(status, separators=(",", ":")).encode())
        finished = sum(phase in FINISHED_PHASES for phase in self.phases.values())
        if finished >= self.expected and not self.done.is_set():
            self.finished_at = time.monotonic()
            self.done.set()


async def follow_workflows(api: aiohttp.ClientSession, progress: Progress) -> None:
    path = f"/apis/{API_VERSION}/namespaces/{NAMESPACE}/workflows"
    async with api.get(path) as response:
        revision = (await check(response))["metadata"]["resourceVersion"]
    while True:
        async for event in watch_events(api, path, revision):
            obj = event["object"]
            revision = obj["metadata"].get("resourceVersion", revision)
            if event["type"] in {"ADDED", "MODIFIED"}:
                progress.seen(obj)


@dataclass
class Measured:
    scenario: Scenario
    wall_seconds: float
    dispatch_ms: list[float]
    steady_dispatch_ms: list[float]
    """Dispatch latencies once every Workflow had started (the start-up burst excluded)."""
    requests: Counter[RequestKey]
    operator_cpu: float
    operator_rss_mib: float
    bench_cpu: float
    status_bytes: int
    phases: Counter[str]
    peak_unfinished_jobs: int
    """The most task Jobs unfinished at once, as the instant kubelet's watch saw them."""
    held_back: int
    """Workflows that waited for a slot of their Tenant at some point."""

    @property
    def tasks_per_second(self) -> float:
        return self.scenario.total_tasks / self.wall_seconds

    def per_task(self, predicate: Callable[[RequestKey], bool]) -> float:
        """Operator requests (the bench's excluded) matching ``predicate``, per task."""
        count = sum(c for k, c in self.requests.items() if k.client != "bench" and predicate(k))
        return count / self.scenario.total_tasks


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


def dispatch_latencies(
    kubelet: InstantKubelet, dag: Dag, after: float = float("-inf")
) -> list[float]:
    """Milliseconds from the last upstream Job marked Complete to the task's Job ADDED.

    Only for tasks whose last upstream completed after ``after`` (monotonic seconds).
    """
    completed: dict[tuple[str, str], float] = {}
    for record in kubelet.jobs.values():
        if record.completed_at is not None:
            completed[(record.workflow, record.task)] = record.completed_at
    latencies = []
    for record in kubelet.jobs.values():
        deps = dag[record.task]
        if record.attempt != 1 or not deps:
            continue
        upstream = [completed.get((record.workflow, dep)) for dep in deps]
        if None in upstream:
            raise RuntimeError(f"{record.workflow}/{record.task} started before its dependencies")
        last = max(u for u in upstream if u is not None)
        if last > after:
            latencies.append((record.added_at - last) * 1000)
    return latencies


def all_started_at(kubelet: InstantKubelet, dag: Dag) -> float:
    """When the last Workflow's first Job appeared: the end of the start-up burst."""
    roots = {task for task, deps in dag.items() if not deps}
    return max(r.added_at for r in kubelet.jobs.values() if r.task in roots and r.attempt == 1)


def stuck_tasks(progress: Progress, kubelet: InstantKubelet, limit: int = 5) -> str:
    """Unfinished tasks of unfinished workflows, with what the instant kubelet did to their Jobs."""
    seen = {(r.workflow, r.task): r for r in kubelet.jobs.values()}
    lines = []
    for name, status in progress.statuses.items():
        if status.get("phase") == "Succeeded":
            continue
        for task, task_status in (status.get("tasks") or {}).items():
            if task_status.get("phase") == "Succeeded":
                continue
            record = seen.get((name, task))
            kubelet_view = (
                "no Job seen"
                if record is None
                else f"Job seen, completed={record.completed_at is not None}"
            )
            lines.append(f"  {name}/{task}: {task_status.get('phase')}; {kubelet_view}")
            if len(lines) >= limit:
                return "\n".join(lines)
    return "\n".join(lines)


def _cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def drive(
    cluster: CountingCluster, operator: OperatorProcess, scenario: Scenario
) -> Measured:
    kubelet = InstantKubelet(cluster.url, scenario.tasks_per_second)
    await kubelet.start()
    api = session(cluster.url, "driver")
    progress = Progress(scenario.workflows)
    watcher = asyncio.create_task(follow_workflows(api, progress))
    dag = scenario.dag
    width = len(str(scenario.workflows - 1))
    manifests = [
        workflow_manifest(f"{scenario.name}-{i:0{width}d}", dag) for i in range(scenario.workflows)
    ]
    bodies = [json.dumps(manifest) for manifest in manifests]
    collection = f"/apis/{API_VERSION}/namespaces/{NAMESPACE}/workflows"
    limit = asyncio.Semaphore(32)

    async def create(body: str) -> None:
        async with limit, api.post(collection, data=body, headers=_JSON) as response:
            await check(response)

    def check_limit() -> None:
        if scenario.limit is not None and kubelet.peak_unfinished > scenario.limit[1]:
            what, most = scenario.limit
            raise RuntimeError(
                f"scenario {scenario.name}: {kubelet.peak_unfinished} task Jobs were unfinished "
                f"at once, over {what} {most}"
            )

    before = cluster.counts()
    cpu_before, bench_before = operator.cpu_seconds(), _cpu_self()
    started = time.monotonic()
    try:
        await asyncio.gather(*(create(body) for body in bodies))
        deadline = started + scenario.timeout
        while not progress.done.is_set() and time.monotonic() < deadline:
            operator.check_alive()
            if kubelet.errors:
                raise RuntimeError(f"instant kubelet failed: {kubelet.errors[:3]}")
            check_limit()
            await asyncio.wait([asyncio.ensure_future(progress.done.wait())], timeout=1.0)
        finished = progress.done.is_set()
        wall = (progress.finished_at if finished else time.monotonic()) - started
        requests = cluster.counts() - before
        cpu = operator.cpu_seconds() - cpu_before
        bench_cpu = _cpu_self() - bench_before
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        await kubelet.stop()
        await api.close()
    check_limit()
    phases = Counter(progress.phases.get(m["metadata"]["name"], "") or "(none)" for m in manifests)
    if not finished or set(phases) != {"Succeeded"}:
        raise RuntimeError(
            f"scenario {scenario.name}: after {wall:.0f}s (timeout {scenario.timeout:.0f}s) "
            f"workflow phases are {dict(phases)}, not all Succeeded\n"
            + stuck_tasks(progress, kubelet)
        )
    return Measured(
        scenario=scenario,
        wall_seconds=wall,
        dispatch_ms=dispatch_latencies(kubelet, dag),
        steady_dispatch_ms=dispatch_latencies(kubelet, dag, all_started_at(kubelet, dag)),
        requests=requests,
        operator_cpu=cpu,
        operator_rss_mib=operator.peak_rss_mib(),
        bench_cpu=bench_cpu,
        status_bytes=max(progress.status_bytes.values()),
        phases=phases,
        peak_unfinished_jobs=kubelet.peak_unfinished,
        held_back=len(progress.held_back),
    )


_JSON = {"Content-Type": "application/json"}


def run_scenario(scenario: Scenario, workdir: Path, args: argparse.Namespace) -> Measured:
    print(
        f"-- {scenario.name}: {scenario.workflows} x {scenario.tasks} tasks ({scenario.shape}), "
        f"timeout {scenario.timeout:.0f}s",
        file=sys.stderr,
    )
    tenant_limit = scenario.tenant_limit
    with CountingCluster() as cluster:
        for crd in sorted((REPO / "crds").glob("*.yaml")):
            cluster.load_crds(crd)
        cluster.create_namespace(NAMESPACE)
        if tenant_limit is not None:  # first: a Tenant adopts no namespace with Agents in it
            cluster.create(tenant_manifest(tenant_limit))
        else:
            cluster.create(agent_manifest(scenario.agent_limit))
        kubeconfig = cluster.write_kubeconfig(workdir / f"{scenario.name}.kubeconfig", NAMESPACE)
        log = workdir / f"{scenario.name}-operator.log"
        untenanted = "Allow" if tenant_limit is None else "Refuse"
        operator = OperatorProcess(kubeconfig, log, args.operator_module, args.resync, untenanted)
        try:
            wait_until_watching(cluster, operator)
            if tenant_limit is not None:
                wait_until_tenanted(cluster, operator)
                cluster.create(agent_manifest(scenario.agent_limit))
                wait_until_agent_seen(cluster, operator)
            measured = asyncio.run(drive(cluster, operator, scenario))
        finally:
            operator.stop()
    print(
        f"   {measured.wall_seconds:.1f}s, {measured.tasks_per_second:.1f} tasks/s, "
        f"at most {measured.peak_unfinished_jobs} Jobs unfinished at once",
        file=sys.stderr,
    )
    return measured


# -- reporting -------------------------------------------------------------------


def _is_read(key: RequestKey) -> bool:
    return not key.is_write


def _is_event_write(key: RequestKey) -> bool:
    return key.is_write and key.resource == "events"


def limit_notes(results: Sequence[Measured]) -> list[str]:
    """For each scenario under a cap: the cap, the peak it kept to, who waited for it."""
    lines = []
    for m in results:
        if m.scenario.limit is not None:
            what, most = m.scenario.limit
            lines += [
                "",
                f"{m.scenario.name}: {what} {most}; at most {m.peak_unfinished_jobs} task Jobs "
                f"unfinished at once; {m.held_back} of {m.scenario.workflows} Workflows waited "
                "for a slot (Tenant- or AgentConcurrencyLimit) at some point.",
            ]
    return lines


def report(results: Sequence[Measured]) -> str:
    lines = [
        "| scenario | workflows x tasks | shape | wall s | tasks/s | dispatch p50 / p99 ms "
        "| after start-up p50 / p99 ms | API writes/task (no Events) | Events/task "
        "| API reads/task | operator CPU s | CPU ms/task | peak RSS MiB "
        "| largest final status bytes | peak unfinished Jobs |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in results:
        s = m.scenario
        writes = m.per_task(lambda k: k.is_write and not _is_event_write(k))
        lines.append(
            f"| {s.name} | {s.workflows} x {s.tasks} | {s.shape} | {m.wall_seconds:.1f} "
            f"| {m.tasks_per_second:.1f} | {percentile(m.dispatch_ms, 0.5):.0f} / "
            f"{percentile(m.dispatch_ms, 0.99):.0f} "
            f"| {percentile(m.steady_dispatch_ms, 0.5):.0f} / "
            f"{percentile(m.steady_dispatch_ms, 0.99):.0f} "
            f"| {writes:.2f} | {m.per_task(_is_event_write):.2f} | {m.per_task(_is_read):.2f} "
            f"| {m.operator_cpu:.1f} | {m.operator_cpu * 1000 / s.total_tasks:.2f} "
            f"| {m.operator_rss_mib:.0f} | {m.status_bytes:,} | {m.peak_unfinished_jobs} |"
        )
    lines += [
        "",
        f"Targets: ≥ {TARGET_TASKS_PER_SECOND:.0f} tasks/s; steady dispatch p50 ≤ "
        f"{TARGET_STEADY_P50_MS:.0f} ms and p99 ≤ {TARGET_STEADY_P99_MS:.0f} ms; operator CPU "
        f"≤ {TARGET_CPU_MS_PER_TASK} ms/task; ≤ {TARGET_WRITES_PER_TASK} API writes/task "
        f"without Events and ≤ {TARGET_EVENTS_PER_TASK:.0f} Event/task; ≤ {TARGET_RSS_MIB:.0f} "
        f"MiB RSS at 1000 live workflows; 1000-task status ≤ {TARGET_STATUS_BYTES // 1024} KiB.",
        *limit_notes(results),
        "",
        "Operator requests per task, by client, verb and resource:",
        "",
        "| scenario | client | verb | resource | per task |",
        "|---|---|---|---|---|",
    ]
    for m in results:
        operator = {k: c for k, c in m.requests.items() if k.client != "bench"}
        for key, count in sorted(operator.items(), key=lambda item: -item[1]):
            per_task = count / m.scenario.total_tasks
            if per_task >= 0.005:
                lines.append(
                    f"| {m.scenario.name} | {key.client} | {key.method} | {key.resource} "
                    f"| {per_task:.2f} |"
                )
    lines += [
        "",
        "Bench process CPU s (emulator + instant kubelet + driver), for comparison: "
        + ", ".join(f"{m.scenario.name} {m.bench_cpu:.1f}" for m in results),
    ]
    return "\n".join(lines)


def scenarios(args: argparse.Namespace) -> list[Scenario]:
    quick = args.quick
    all_scenarios = {
        "batch": Scenario(
            "batch",
            10 if quick else args.workflows,
            args.tasks,
            args.shape,
            args.timeout or 300,
        ),
        "tenant": Scenario(
            "tenant",
            10 if quick else args.workflows,
            args.tasks,
            args.shape,
            args.timeout or 300,
            tenant_limit=args.max_concurrent_tasks,
        ),
        "agent": Scenario(
            "agent",
            10 if quick else args.workflows,
            args.tasks,
            args.shape,
            args.timeout or 300,
            agent_limit=args.max_concurrent_tasks,
        ),
        "live": Scenario("live", 100 if quick else 1000, 10, "mixed", args.timeout or 600),
        "wide": Scenario("wide", 1, 100 if quick else 1000, "wide", args.timeout or 300),
        "steady": Scenario(
            "steady", 100 if quick else 1000, 10, "mixed", args.timeout or 900, args.rate
        ),
    }
    chosen = [name.strip() for name in args.scenarios.split(",") if name.strip()]
    unknown = set(chosen) - set(all_scenarios)
    if unknown:
        raise SystemExit(f"unknown scenarios: {', '.join(sorted(unknown))}")
    return [all_scenarios[name] for name in chosen]


def main() -> int:
    # The emulator keeps every Job and 20,000 changes of history; its own full garbage
    # collections (up to a second each) would show up as the operator's dispatch latency,
    # so this process runs without automatic full collections (young ones go on).
    gc.set_threshold(700, 10, 1_000_000)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", default="batch,live,wide,steady,tenant")
    parser.add_argument("--rate", type=float, default=50.0, help="steady: Jobs finished per second")
    parser.add_argument("--workflows", type=int, default=100, help="batch, tenant: workflows")
    parser.add_argument("--tasks", type=int, default=10, help="batch, tenant: tasks per workflow")
    parser.add_argument(
        "--shape", choices=["mixed", "chain"], default="mixed", help="batch, tenant: shape"
    )
    parser.add_argument(
        "--max-concurrent-tasks",
        type=int,
        default=20,
        help="tenant: the Tenant's limits.maxConcurrentTasks; agent: the Agent's maxConcurrency",
    )
    parser.add_argument("--timeout", type=float, default=0, help="seconds per scenario")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a sanity run")
    parser.add_argument(
        "--resync", type=float, default=600, help="TROUPE_RESYNC_SECONDS of the operator"
    )
    parser.add_argument(
        "--operator-module",
        default="troupe_operator.main",
        help="module for `kopf run -m` (e.g. one that patches in a candidate fix; add its "
        "directory to PYTHONPATH)",
    )
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="troupe-bench-") as workdir:
        try:
            for scenario in scenarios(args):
                results.append(run_scenario(scenario, Path(workdir), args))
        finally:
            if results:
                print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
