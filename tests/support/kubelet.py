"""The scheduler's and kubelet's part of the Job runner: one Pod, from Pending to its end.

What a real node does before, while and after a container runs, as far as an operator can
see it (status, Events, what the process may do):

- scheduling: a Pod the runner declares unschedulable stays Pending, condition
  `PodScheduled` False, reason `Unschedulable`, message `0/1 nodes are available: 1
  Insufficient cpu.`, with a `FailedScheduling` Event, for as long as it exists;
- image: an unpullable image leaves the container waiting with `ErrImagePull`, then
  `ImagePullBackOff` (`Back-off pulling image "x"`), retried with a growing back-off
  (1 s doubling to 10 s), for as long as the Pod exists;
- identity: a token for the Pod's ServiceAccount from the TokenRequest API, bound to the
  Pod (deleting the Pod revokes it), in a kubeconfig of its own that the process gets as
  `KUBECONFIG`: the process can do what RBAC grants that ServiceAccount, and nothing else;
- configuration: a missing Secret, ConfigMap or key referenced by env leaves the container
  waiting with `CreateContainerConfigError` and the kubelet's message (`secret "x" not
  found`, `couldn't find key k in Secret ns/x`); one referenced by a volume (or a token
  that cannot be had) leaves it `ContainerCreating` with a `FailedMount` Event; either
  is retried every second, and the container starts once everything is there;
- running and after: `Running` and Ready, the process (`pod_sandbox`), then `Succeeded`
  or `Failed` with the exit code, reason and termination message; a command that cannot
  be started ends with exit code 128, reason `StartError`.

The kubelet never gives up on a waiting Pod; the Job controller does (the Job deleted, or
`activeDeadlineSeconds`), by cancelling `run`. Not emulated: restarts in place
(`restartPolicy: OnFailure`), probes, resource limits, node names and IPs.
"""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
from collections.abc import Awaitable, Callable
from typing import NoReturn

import aiohttp

from tests.support import pod_status
from tests.support.event_recorder import EventRecorder
from tests.support.kube_http import KubeHttp, KubeHttpError, KubeObject
from tests.support.kubeconfig import write_kubeconfig
from tests.support.pod_sandbox import (
    ContainerConfigError,
    Launcher,
    PodSandbox,
    VolumeSetupError,
    run_here,
)

_CONFIG_RETRY = 1.0
_PULL_ERROR_HOLD = 0.5
_PULL_BACKOFF_START = 1.0
_PULL_BACKOFF_MAX = 10.0
_TOKEN_VOLUME = "kube-api-access"
_TOKEN_SECONDS = 3607


def _pull_error(image: str) -> str:
    return (
        f'rpc error: code = NotFound desc = failed to pull and unpack image "{image}":'
        f' failed to resolve reference "{image}": {image}: not found'
    )


class _StatusWriter:
    """Writes a Pod's status through the `status` subresource, skipping repeats of a step."""

    def __init__(self, api: KubeHttp, pod: KubeObject) -> None:
        self._api = api
        metadata = pod["metadata"]
        self._path = f"/api/v1/namespaces/{metadata['namespace']}/pods/{metadata['name']}/status"
        self._step: tuple[str, ...] = ()

    async def write(self, status: KubeObject, *step: str) -> None:
        if step and step == self._step:
            return
        self._step = step
        await self._api.merge_patch(self._path, {"status": status})


class Kubelet:
    def __init__(
        self,
        api: KubeHttp,
        api_url: str,
        events: EventRecorder,
        workdir: pathlib.Path,
        slots: asyncio.Semaphore,
        launch: Launcher = run_here,
    ) -> None:
        self._api = api
        self._launch = launch
        self._api_url = api_url
        self._events = events
        self._workdir = workdir
        self._slots = slots

    async def run(
        self,
        pod: KubeObject,
        *,
        schedulable: bool,
        pullable: bool,
        on_running: Callable[[], Awaitable[None]],
    ) -> int:
        """Run the Pod to its end and return the container's exit code."""
        status = _StatusWriter(self._api, pod)
        if not schedulable:
            await self._stay_unscheduled(status, pod)
        metadata = pod["metadata"]
        sandbox = PodSandbox(
            self._workdir / metadata["namespace"] / metadata["name"], pod, self._api, self._launch
        )
        container = sandbox.container
        started = pod_status.now()
        exit_code, reason, message = 137, "Killed", None
        try:
            if not pullable:
                await self._pull_forever(status, pod, container, started)
            env = await self._until_configured(status, pod, sandbox, started)
            async with self._slots:
                await status.write(pod_status.running(container, started))
                await on_running()
                try:
                    exit_code = await sandbox.run(env)
                except OSError as problem:
                    exit_code, message = 128, str(problem)
            reason = "Completed" if exit_code == 0 else "StartError" if message else "Error"
        finally:
            if message is None:
                message = sandbox.termination_message(exit_code)
            ended = pod_status.terminated(container, started, exit_code, reason, message)
            with contextlib.suppress(KubeHttpError, aiohttp.ClientError):  # the Pod may be gone
                await status.write(ended)
        return exit_code

    async def _stay_unscheduled(self, status: _StatusWriter, pod: KubeObject) -> NoReturn:
        await status.write(pod_status.unschedulable())
        await self._events.record(
            "default-scheduler",
            pod,
            "Warning",
            "FailedScheduling",
            pod_status.UNSCHEDULABLE_MESSAGE,
        )
        await asyncio.Future()  # until the Job controller gives up on the Pod
        raise AssertionError("unreachable")

    async def _pull_forever(
        self, status: _StatusWriter, pod: KubeObject, container: KubeObject, started: str
    ) -> NoReturn:
        image = container.get("image", "")
        back_off = f'Back-off pulling image "{image}"'
        delay = _PULL_BACKOFF_START
        while True:
            await status.write(
                pod_status.waiting(container, started, "ErrImagePull", _pull_error(image))
            )
            await self._events.record(
                "kubelet",
                pod,
                "Warning",
                "Failed",
                f'Failed to pull image "{image}": {_pull_error(image)}',
            )
            await asyncio.sleep(_PULL_ERROR_HOLD)
            await status.write(pod_status.waiting(container, started, "ImagePullBackOff", back_off))
            await self._events.record("kubelet", pod, "Normal", "BackOff", back_off)
            await asyncio.sleep(delay)
            delay = min(2 * delay, _PULL_BACKOFF_MAX)

    async def _until_configured(
        self, status: _StatusWriter, pod: KubeObject, sandbox: PodSandbox, started: str
    ) -> dict[str, str]:
        """The container's env, once its token, volumes, Secrets and ConfigMaps are all there."""
        container = sandbox.container
        while True:
            try:
                await self._write_kubeconfig(pod, sandbox)
                await sandbox.prepare()
                return await sandbox.environment()
            except VolumeSetupError as problem:
                waiting = pod_status.waiting(container, started, "ContainerCreating", "")
                await status.write(waiting, "ContainerCreating")
                await self._events.record("kubelet", pod, "Warning", "FailedMount", str(problem))
            except ContainerConfigError as problem:
                reason = "CreateContainerConfigError"
                waiting = pod_status.waiting(container, started, reason, str(problem))
                await status.write(waiting, reason, str(problem))
                await self._events.record("kubelet", pod, "Warning", "Failed", f"Error: {problem}")
            await asyncio.sleep(_CONFIG_RETRY)

    async def _write_kubeconfig(self, pod: KubeObject, sandbox: PodSandbox) -> None:
        """Get the Pod's token once, the way the kubelet fills its projected token volume."""
        if sandbox.kubeconfig_path.exists():
            return
        metadata = pod["metadata"]
        namespace = metadata["namespace"]
        account = pod["spec"]["serviceAccountName"]
        request = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "expirationSeconds": _TOKEN_SECONDS,
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": metadata["name"],
                    "uid": metadata["uid"],
                },
            },
        }
        try:
            granted = await self._api.create(
                f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token", request
            )
        except KubeHttpError as error:
            raise VolumeSetupError(
                _TOKEN_VOLUME, f"failed to fetch token: {error.message}"
            ) from error
        sandbox.root.mkdir(parents=True, exist_ok=True)
        write_kubeconfig(
            sandbox.kubeconfig_path, self._api_url, namespace, granted["status"]["token"]
        )
