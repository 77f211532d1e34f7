"""A local Job runner: the Job controller, with the scheduler and kubelet of `kubelet.py`.

It watches `batch/v1` Jobs through the API, and for each new Job runs attempts until one
succeeds or the Job fails, the way the Job controller does:

- each attempt is a Pod (`generateName: <job>-`, labels `job-name`,
  `batch.kubernetes.io/job-name`, `controller-uid`, `batch.kubernetes.io/controller-uid`
  plus the template's, ownerReference to the Job), created through the API; when the API
  refuses it (its ServiceAccount does not exist: 403 from the ServiceAccount admission),
  a `FailedCreate` Event goes on the Job and the creation is retried with a back-off
  (0.1 s doubling to 2 s) until it succeeds or the Job goes, the Job meanwhile active with
  no Pods;
- the Pod's life (scheduling, image pull, ServiceAccount token, Secrets and ConfigMaps,
  the local process, the final state): `kubelet.py`;
- Job status goes through the `status` subresource: `startTime`, `active` (1 while its Pod
  is unfinished), `ready` (1 while the container runs), `succeeded`, `failed`,
  `completionTime`, and conditions `SuccessCriteriaMet` + `Complete` (reason
  `CompletionsReached`) or `FailureTarget` + `Failed` with reason `BackoffLimitExceeded`,
  `DeadlineExceeded` (`activeDeadlineSeconds`, process killed) or `PodFailurePolicy`
  (`onExitCodes` rules; actions FailJob, Ignore, Count);
- a Job deleted while it runs has its process killed (its Pods go by garbage collection);
- Jobs run concurrently, optionally capped (`max_parallel`; waiting Pods stay Pending).

Options, as constructor keywords or as attributes a test sets on the fixture's runner
before creating Jobs: `unpullable_images(image) -> bool` (those Pods wait in
`ImagePullBackOff`) and `unschedulable_jobs(job) -> bool` (those Jobs' Pods stay
`Unschedulable`); `launch` (a `pod_sandbox.Launcher`: where each Pod's process runs, by
default on this machine).

Not emulated: `completions`/`parallelism` above 1, indexed Jobs, `suspend`,
`ttlSecondsAfterFinished`, `onPodConditions` rules, init and sidecar containers, the
exponential delay between attempts (`retry_delay`, default 0, is used instead).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import pathlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from tests.support.event_recorder import EventRecorder
from tests.support.kube_http import KubeHttp, KubeHttpError, KubeObject
from tests.support.kubelet import Kubelet
from tests.support.loopback import BackgroundService
from tests.support.pod_sandbox import Launcher, run_here

USER_AGENT = "troupe-harness-jobrunner/1.0"
_CREATE_RETRY_START = 0.1
_CREATE_RETRY_MAX = 2.0

ImagePredicate = Callable[[str], bool]
JobPredicate = Callable[[KubeObject], bool]


def _never(_: object) -> bool:
    return False


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _finished(job: KubeObject) -> bool:
    conditions = (job.get("status") or {}).get("conditions") or []
    return any(c["type"] in {"Complete", "Failed"} and c["status"] == "True" for c in conditions)


@dataclass(frozen=True)
class Outcome:
    """The terminal condition of a Job."""

    succeeded: bool
    reason: str
    message: str


class JobFailed(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.outcome = Outcome(False, reason, message)


def _policy_action(job: KubeObject, exit_code: int) -> tuple[str, int] | None:
    """The (action, rule index) of the first `podFailurePolicy` rule matching the exit code."""
    rules = ((job["spec"].get("podFailurePolicy") or {}).get("rules")) or []
    for index, rule in enumerate(rules):
        on_exit_codes = rule.get("onExitCodes")
        if on_exit_codes is None:
            continue
        listed = exit_code in on_exit_codes.get("values", [])
        if listed == (on_exit_codes.get("operator", "In") == "In"):
            return rule["action"], index
    return None


class JobRunner(BackgroundService):
    """Runs the emulator's Jobs as local processes, from its own thread and event loop."""

    def __init__(
        self,
        api_url: str,
        workdir: pathlib.Path,
        *,
        max_parallel: int | None = None,
        retry_delay: float = 0.0,
        unpullable_images: ImagePredicate = _never,
        unschedulable_jobs: JobPredicate = _never,
        launch: Launcher = run_here,
    ) -> None:
        super().__init__("job-runner")
        self._api_url = api_url
        self._workdir = workdir
        self._max_parallel = max_parallel
        self._retry_delay = retry_delay
        self.unpullable_images = unpullable_images
        self.unschedulable_jobs = unschedulable_jobs
        self._launch = launch
        self._running: dict[str, asyncio.Task[None]] = {}
        self._seen: set[str] = set()

    @property
    def running_jobs(self) -> int:
        """How many Jobs have a live attempt loop (their processes die with them)."""
        return len(self._running)

    def log_file(self, namespace: str, pod_name: str) -> pathlib.Path:
        """Where one Pod's process writes its output (stdout and stderr)."""
        return self._workdir / namespace / pod_name / "log"

    def log_of(self, namespace: str, pod_name: str) -> str:
        """The output (stdout and stderr) of one Pod's process."""
        return self.log_file(namespace, pod_name).read_text(errors="replace")

    async def _start(self) -> None:
        self._api = KubeHttp(self._api_url, user_agent=USER_AGENT)
        self._events = EventRecorder(self._api)
        slots = asyncio.Semaphore(self._max_parallel or 1_000_000)
        self._kubelet = Kubelet(
            self._api, self._api_url, self._events, self._workdir, slots, self._launch
        )
        self._controller = asyncio.create_task(self._follow_jobs())

    async def _stop(self) -> None:
        tasks = [self._controller, *self._running.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._api.close()

    async def _follow_jobs(self) -> None:
        resource_version = ""
        while True:
            with contextlib.suppress(KubeHttpError, aiohttp.ClientError, OSError, TimeoutError):
                async for event in self._api.watch("/apis/batch/v1/jobs", resource_version):
                    job = event["object"]
                    if event["type"] == "ERROR":
                        resource_version = ""
                        break
                    resource_version = job["metadata"]["resourceVersion"]
                    self._react(event["type"], job)
            await asyncio.sleep(0.1)

    def _react(self, event_type: str, job: KubeObject) -> None:
        uid = job["metadata"].get("uid")
        if event_type == "DELETED" and uid in self._running:
            self._running.pop(uid).cancel()
        elif event_type in {"ADDED", "MODIFIED"} and uid not in self._seen and not _finished(job):
            self._seen.add(uid)
            self._running[uid] = asyncio.create_task(self._run_job(job))
            self._running[uid].add_done_callback(lambda _: self._running.pop(uid, None))

    async def _run_job(self, job: KubeObject) -> None:
        try:
            await self._drive_job(job)
        except KubeHttpError as error:
            if error.status != 404:  # 404: the Job was deleted meanwhile
                raise

    async def _patch_status(self, job: KubeObject, **status: Any) -> None:
        metadata = job["metadata"]
        path = f"/apis/batch/v1/namespaces/{metadata['namespace']}/jobs/{metadata['name']}/status"
        await self._api.merge_patch(path, {"status": status})

    async def _drive_job(self, job: KubeObject) -> None:
        counts = {"failed": 0, "succeeded": 0}
        await self._patch_status(job, startTime=_now(), active=0, ready=0)
        deadline = job["spec"].get("activeDeadlineSeconds")
        try:
            async with asyncio.timeout(deadline):
                outcome = await self._attempts(job, counts)
        except TimeoutError:
            outcome = Outcome(
                False, "DeadlineExceeded", "Job was active longer than specified deadline"
            )
            counts["failed"] += 1
        except JobFailed as failure:
            outcome = failure.outcome
        await self._patch_status(job, **self._final_status(outcome, counts))

    async def _attempts(self, job: KubeObject, counts: dict[str, int]) -> Outcome:
        backoff_limit = job["spec"].get("backoffLimit", 6)
        namespace = job["metadata"]["namespace"]
        image = job["spec"]["template"]["spec"]["containers"][0].get("image", "")
        while True:
            pod = await self._create_pod(job)
            await self._patch_status(job, active=1, ready=0)
            exit_code = await self._kubelet.run(
                pod,
                schedulable=not self.unschedulable_jobs(job),
                pullable=not self.unpullable_images(image),
                on_running=lambda: self._patch_status(job, ready=1),
            )
            pod_name = pod["metadata"]["name"]
            if exit_code == 0:
                counts["succeeded"] += 1
                return Outcome(
                    True, "CompletionsReached", "Reached expected number of succeeded pods"
                )
            policy = _policy_action(job, exit_code)
            if policy is not None and policy[0] == "FailJob":
                counts["failed"] += 1
                container = job["spec"]["template"]["spec"]["containers"][0]["name"]
                raise JobFailed(
                    "PodFailurePolicy",
                    f"Container {container} for pod {namespace}/{pod_name} failed with"
                    f" exit code {exit_code} matching FailJob rule at index {policy[1]}",
                )
            if policy is None or policy[0] != "Ignore":
                counts["failed"] += 1
            await self._patch_status(job, failed=counts["failed"], active=0, ready=0)
            if counts["failed"] > backoff_limit:
                raise JobFailed(
                    "BackoffLimitExceeded", "Job has reached the specified backoff limit"
                )
            await asyncio.sleep(self._retry_delay)

    @staticmethod
    def _final_status(outcome: Outcome, counts: dict[str, int]) -> KubeObject:
        now = _now()
        if outcome.succeeded:
            kinds = ("SuccessCriteriaMet", "Complete")
        else:
            kinds = ("FailureTarget", "Failed")
        conditions = [
            {
                "type": kind,
                "status": "True",
                "reason": outcome.reason,
                "message": outcome.message,
                "lastProbeTime": now,
                "lastTransitionTime": now,
            }
            for kind in kinds
        ]
        status: dict[str, Any] = {"active": 0, "ready": 0, "conditions": conditions, **counts}
        if outcome.succeeded:
            status["completionTime"] = now
        return status

    async def _create_pod(self, job: KubeObject) -> KubeObject:
        """Create the attempt's Pod, retrying with a back-off while the API refuses it."""
        path = f"/api/v1/namespaces/{job['metadata']['namespace']}/pods"
        delay = _CREATE_RETRY_START
        while True:
            try:
                return await self._api.create(path, self._pod_for(job))
            except KubeHttpError as refused:
                if refused.status == 404:  # the namespace went, and the Job with it
                    raise
                message = f"Error creating: {refused.message}"
                await self._events.record("job-controller", job, "Warning", "FailedCreate", message)
            await asyncio.sleep(delay)
            delay = min(2 * delay, _CREATE_RETRY_MAX)

    @staticmethod
    def _pod_for(job: KubeObject) -> KubeObject:
        metadata = job["metadata"]
        template = job["spec"]["template"]
        labels = {
            **((template.get("metadata") or {}).get("labels") or {}),
            "job-name": metadata["name"],
            "batch.kubernetes.io/job-name": metadata["name"],
            "controller-uid": metadata["uid"],
            "batch.kubernetes.io/controller-uid": metadata["uid"],
        }
        owner = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "name": metadata["name"],
            "uid": metadata["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "generateName": f"{metadata['name']}-",
                "namespace": metadata["namespace"],
                "labels": labels,
                "annotations": (template.get("metadata") or {}).get("annotations") or {},
                "ownerReferences": [owner],
            },
            "spec": template["spec"],
        }
