"""A local Job runner: the Job controller and the kubelet, for the emulator.

It watches `batch/v1` Jobs through the API, and for each new Job runs attempts until one
succeeds or the Job fails, the way the Job controller does:

- each attempt is a Pod (`generateName: <job>-`, labels `job-name`,
  `batch.kubernetes.io/job-name`, `controller-uid`, `batch.kubernetes.io/controller-uid`
  plus the template's, ownerReference to the Job) whose status goes Pending → Running →
  Succeeded/Failed with `containerStatuses[0].state.terminated` {exitCode, reason, message};
- the first container runs as a local process (see `pod_sandbox.py` for path rewriting);
- Job status goes through the `status` subresource: `startTime`, `active`, `succeeded`,
  `failed`, `ready`, `completionTime`, and conditions `SuccessCriteriaMet` + `Complete`
  (reason `CompletionsReached`) or `FailureTarget` + `Failed` with reason
  `BackoffLimitExceeded`, `DeadlineExceeded` (`activeDeadlineSeconds`, process killed) or
  `PodFailurePolicy` (`onExitCodes` rules; actions FailJob, Ignore, Count);
- a Job deleted while it runs has its process killed (its Pods go by garbage collection);
- Jobs run concurrently, optionally capped (`max_parallel`; waiting Pods stay Pending).

Not emulated: `completions`/`parallelism` above 1, indexed Jobs, `suspend`,
`ttlSecondsAfterFinished`, `onPodConditions` rules, init and sidecar containers, the
exponential delay between attempts (`retry_delay`, default 0, is used instead).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import pathlib
from dataclasses import dataclass
from typing import Any

import aiohttp

from tests.support.kube_http import KubeHttp, KubeHttpError, KubeObject
from tests.support.loopback import BackgroundService
from tests.support.pod_sandbox import PodSandbox


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _finished(job: KubeObject) -> bool:
    conditions = (job.get("status") or {}).get("conditions") or []
    return any(c["type"] in {"Complete", "Failed"} and c["status"] == "True" for c in conditions)


@dataclass(frozen=True)
class Attempt:
    pod_name: str
    exit_code: int


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
        kubeconfig: pathlib.Path,
        workdir: pathlib.Path,
        *,
        max_parallel: int | None = None,
        retry_delay: float = 0.0,
    ) -> None:
        super().__init__("job-runner")
        self._api_url = api_url
        self._kubeconfig = kubeconfig
        self._workdir = workdir
        self._max_parallel = max_parallel
        self._retry_delay = retry_delay
        self._running: dict[str, asyncio.Task[None]] = {}
        self._seen: set[str] = set()

    @property
    def running_jobs(self) -> int:
        """How many Jobs have a live attempt loop (their processes die with them)."""
        return len(self._running)

    def log_of(self, namespace: str, pod_name: str) -> str:
        """The output (stdout and stderr) of one Pod's process."""
        return (self._workdir / namespace / pod_name / "log").read_text(errors="replace")

    async def _start(self) -> None:
        self._api = KubeHttp(self._api_url)
        self._slots = asyncio.Semaphore(self._max_parallel or 1_000_000)
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

    async def _drive_job(self, job: KubeObject) -> None:
        namespace, name = job["metadata"]["namespace"], job["metadata"]["name"]
        status_path = f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}/status"
        started = _now()
        counts = {"failed": 0, "succeeded": 0}
        await self._api.merge_patch(
            status_path, {"status": {"startTime": started, "active": 1, "ready": 0}}
        )
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
        await self._api.merge_patch(status_path, {"status": self._final_status(outcome, counts)})

    async def _attempts(self, job: KubeObject, counts: dict[str, int]) -> Outcome:
        backoff_limit = job["spec"].get("backoffLimit", 6)
        namespace = job["metadata"]["namespace"]
        while True:
            attempt = await self._run_pod(job)
            if attempt.exit_code == 0:
                counts["succeeded"] += 1
                return Outcome(
                    True, "CompletionsReached", "Reached expected number of succeeded pods"
                )
            policy = _policy_action(job, attempt.exit_code)
            if policy is not None and policy[0] == "FailJob":
                counts["failed"] += 1
                container = job["spec"]["template"]["spec"]["containers"][0]["name"]
                raise JobFailed(
                    "PodFailurePolicy",
                    f"Container {container} for pod {namespace}/{attempt.pod_name} failed with"
                    f" exit code {attempt.exit_code} matching FailJob rule at index {policy[1]}",
                )
            if policy is None or policy[0] != "Ignore":
                counts["failed"] += 1
            path = f"/apis/batch/v1/namespaces/{namespace}/jobs/{job['metadata']['name']}/status"
            await self._api.merge_patch(path, {"status": {"failed": counts["failed"]}})
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

    async def _run_pod(self, job: KubeObject) -> Attempt:
        pod = await self._api.create(
            f"/api/v1/namespaces/{job['metadata']['namespace']}/pods", self._pod_for(job)
        )
        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        pod_path = f"/api/v1/namespaces/{namespace}/pods/{name}/status"
        sandbox = PodSandbox(self._workdir / namespace / name, pod, self._api, self._kubeconfig)
        container_name = sandbox.container["name"]
        exit_code, reason = 1, "Error"
        try:
            async with self._slots:
                started = _now()
                await sandbox.prepare()
                running = {"running": {"startedAt": started}}
                await self._api.merge_patch(
                    pod_path, self._pod_status("Running", container_name, running, started)
                )
                exit_code = await sandbox.run()
                reason = "Completed" if exit_code == 0 else "Error"
        except asyncio.CancelledError:  # deadline reached, Job deleted, or runner stopping
            exit_code, reason = 137, "Killed"
            raise
        except (KubeHttpError, KeyError, OSError) as problem:
            sandbox.message_path.parent.mkdir(parents=True, exist_ok=True)
            sandbox.message_path.write_text(f"CreateContainerConfigError: {problem}")
            exit_code, reason = 128, "CreateContainerConfigError"
        finally:
            terminated = {
                "terminated": {
                    "exitCode": exit_code,
                    "reason": reason,
                    "message": sandbox.termination_message(exit_code),
                    "finishedAt": _now(),
                }
            }
            phase = "Succeeded" if exit_code == 0 else "Failed"
            with contextlib.suppress(KubeHttpError, aiohttp.ClientError):  # the Pod may be gone
                await self._api.merge_patch(
                    pod_path, self._pod_status(phase, container_name, terminated, None)
                )
        return Attempt(name, exit_code)

    @staticmethod
    def _pod_status(
        phase: str, container: str, state: KubeObject, started: str | None
    ) -> KubeObject:
        container_status = {
            "name": container,
            "state": state,
            "ready": phase == "Running",
            "started": phase == "Running",
            "restartCount": 0,
            "image": "",
            "imageID": "",
        }
        status: dict[str, Any] = {"phase": phase, "containerStatuses": [container_status]}
        if started is not None:
            status["startTime"] = started
        return {"status": status}

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
