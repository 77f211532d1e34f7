"""An "instant kubelet": finishes every task Job the moment it appears.

The harness's ``JobRunner`` runs each task's real process, which costs a second or more per
task; the controller benchmark needs tasks that take no time, so that what it measures is
the operator. This plays the Job controller, the kubelet and the task at once: for each new
Job carrying Troupe's labels it writes the task's output ConfigMap (text plus a
``TaskResult`` with small fixed token counts, stamped with the attempt's ``TaskReport``, as
the agent's task mode does) and marks the Job ``Complete`` through the ``status``
subresource. It makes no Pods: on success the operator reads the stamped report, never a
pod. Jobs can be
finished at once or at a steady rate (``tasks_per_second``). It records, in this process's
monotonic clock, when each Job's ADDED event arrived and when it was marked Complete, which
is what the dispatch latency is computed from.

It also counts the task Jobs unfinished at once (``peak_unfinished``), from its watch,
which delivers the cluster's changes in the order they were made: a Job counts from its
ADDED event until an event shows it ``Complete`` or ``Failed`` (or deleted). So the count
is the cluster's own at every point of its history, whatever the lag of either client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp

from counting_cluster import BENCH_AGENT_PREFIX
from troupe_operator.api import (
    ATTEMPT_ANNOTATION,
    OUTPUT_KEY,
    REPORT_ANNOTATION,
    RESULT_KEY,
    TaskReport,
    TaskResult,
    TokenUsage,
)
from troupe_operator.workflow import LABEL_ATTEMPT, LABEL_TASK, LABEL_WORKFLOW, WorkflowRef

KubeObject = dict[str, Any]
JobKey = tuple[str, str]  # namespace, Job name

OUTPUT_TEXT = "Done: the instant kubelet finished this task at once."
RESULT = TaskResult(
    model="bench-instant",
    usage=TokenUsage(input_tokens=12, output_tokens=8, total_tokens=20),
    calls=1,
    bytes=len(OUTPUT_TEXT.encode()),
)
RESULT_JSON = RESULT.model_dump_json(by_alias=True)
REPORT = TaskReport(succeeded=True, result=RESULT, preview=OUTPUT_TEXT).encode()


def session(base_url: str, role: str) -> aiohttp.ClientSession:
    """An API session whose requests the emulator counts as the bench's, not the operator's."""
    return aiohttp.ClientSession(
        base_url,
        headers={"User-Agent": f"{BENCH_AGENT_PREFIX}-{role}"},
        connector=aiohttp.TCPConnector(limit=64),
    )


async def check(response: aiohttp.ClientResponse) -> KubeObject:
    body = await response.text()
    if response.status >= 400:
        raise RuntimeError(f"{response.method} {response.url.path}: HTTP {response.status} {body}")
    result: KubeObject = json.loads(body)
    return result


async def watch_events(
    api: aiohttp.ClientSession, path: str, resource_version: str
) -> AsyncIterator[KubeObject]:
    """Events of one watch request, read in chunks (a Workflow's status can exceed
    aiohttp's 128 KiB line limit)."""
    params = {"watch": "true", "resourceVersion": resource_version}
    async with api.get(path, params=params, timeout=aiohttp.ClientTimeout()) as response:
        if response.status >= 400:
            raise RuntimeError(f"watch {path}: HTTP {response.status} {await response.text()}")
        pending = b""
        async for chunk in response.content.iter_any():
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if line.strip():
                    yield json.loads(line)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _finished(job: KubeObject) -> bool:
    conditions = (job.get("status") or {}).get("conditions") or ()
    return any(
        c.get("type") in {"Complete", "Failed"} and c.get("status") == "True" for c in conditions
    )


@dataclass
class JobRecord:
    """What the instant kubelet saw of one task Job (monotonic seconds)."""

    namespace: str
    workflow: str
    task: str
    attempt: int
    added_at: float
    completed_at: float | None = None


class InstantKubelet:
    """Completes task Jobs as their ADDED events arrive; see the module docstring.

    With ``tasks_per_second`` set, Jobs are completed in arrival order at that steady
    rate instead of at once.
    """

    def __init__(self, base_url: str, tasks_per_second: float | None = None) -> None:
        self._base_url = base_url
        self._interval = 1.0 / tasks_per_second if tasks_per_second else 0.0
        self.jobs: dict[JobKey, JobRecord] = {}
        self.errors: list[str] = []
        self.peak_unfinished = 0
        """The most task Jobs unfinished at once (see the module docstring)."""
        self._unfinished: set[JobKey] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._watch: asyncio.Task[None] | None = None
        self._pacer: asyncio.Task[None] | None = None
        self._due: asyncio.Queue[tuple[KubeObject, JobRecord]] = asyncio.Queue()
        self._api: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Start watching; returns once the watch is established from the current state."""
        self._api = session(self._base_url, "instant-kubelet")
        async with self._api.get("/apis/batch/v1/jobs") as response:
            revision = (await check(response))["metadata"]["resourceVersion"]
        self._watch = asyncio.create_task(self._follow(self._api, revision))
        if self._interval:
            self._pacer = asyncio.create_task(self._pace(self._api))

    async def stop(self) -> None:
        for background in (self._watch, self._pacer):
            if background is not None:
                background.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await background
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._api is not None:
            await self._api.close()

    async def _follow(self, api: aiohttp.ClientSession, revision: str) -> None:
        while True:  # the server may end a watch; resume from the last revision seen
            async for event in watch_events(api, "/apis/batch/v1/jobs", revision):
                obj = event["object"]
                revision = obj["metadata"].get("resourceVersion", revision)
                if event["type"] == "ADDED":
                    self._job_added(api, obj)
                if event["type"] in {"ADDED", "MODIFIED", "DELETED"}:
                    self._count(event["type"], obj)

    def _count(self, kind: str, job: KubeObject) -> None:
        """Keep the set of task Jobs unfinished now, and its peak."""
        key = (job["metadata"]["namespace"], job["metadata"]["name"])
        if kind == "DELETED" or _finished(job):
            self._unfinished.discard(key)
        elif kind == "ADDED" and key in self.jobs:  # a task Job (``_job_added`` took it)
            self._unfinished.add(key)
            self.peak_unfinished = max(self.peak_unfinished, len(self._unfinished))

    async def _pace(self, api: aiohttp.ClientSession) -> None:
        """Complete queued Jobs one every ``_interval`` seconds, on a fixed schedule."""
        next_at = time.monotonic()
        while True:
            job, record = await self._due.get()
            next_at = max(next_at + self._interval, time.monotonic())
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            self._spawn(self._complete(api, job, record))

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _job_added(self, api: aiohttp.ClientSession, job: KubeObject) -> None:
        metadata = job["metadata"]
        labels = metadata.get("labels") or {}
        if LABEL_WORKFLOW not in labels or LABEL_TASK not in labels:
            return
        record = JobRecord(
            namespace=metadata["namespace"],
            workflow=labels[LABEL_WORKFLOW],
            task=labels[LABEL_TASK],
            attempt=int(labels.get(LABEL_ATTEMPT, "1")),
            added_at=time.monotonic(),
        )
        self.jobs[(record.namespace, metadata["name"])] = record
        if self._interval:
            self._due.put_nowait((job, record))
        else:
            self._spawn(self._complete(api, job, record))

    async def _complete(
        self, api: aiohttp.ClientSession, job: KubeObject, record: JobRecord
    ) -> None:
        metadata = job["metadata"]
        namespace, name = record.namespace, metadata["name"]
        owners = metadata.get("ownerReferences") or []
        run = WorkflowRef(namespace, record.workflow, owners[0]["uid"])
        output = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": run.output_config_map(record.task),
                "namespace": namespace,
                "labels": run.task_labels(record.task),
                "annotations": {REPORT_ANNOTATION: REPORT, ATTEMPT_ANNOTATION: str(record.attempt)},
                "ownerReferences": [run.owner_reference(block_owner_deletion=False)],
            },
            "data": {OUTPUT_KEY: OUTPUT_TEXT, RESULT_KEY: RESULT_JSON},
        }
        now = _now()
        status = {
            "status": {
                "startTime": now,
                "completionTime": now,
                "active": 0,
                "succeeded": 1,
                "conditions": [
                    {
                        "type": "Complete",
                        "status": "True",
                        "reason": "CompletionsReached",
                        "lastTransitionTime": now,
                    }
                ],
            }
        }
        merge = {"Content-Type": "application/merge-patch+json"}
        try:
            async with api.post(f"/api/v1/namespaces/{namespace}/configmaps", json=output) as r:
                await check(r)
            path = f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}/status"
            async with api.patch(path, data=json.dumps(status), headers=merge) as r:
                await check(r)
        except (RuntimeError, aiohttp.ClientError) as error:
            self.errors.append(f"{namespace}/{name}: {error}")
            return
        record.completed_at = time.monotonic()
