"""`GET /api/v1/namespaces/NS/pods/NAME/log`: a Pod's output, as kube-apiserver relays it.

kube-apiserver asks the Pod's kubelet; here the Job runner's kubelet writes each Pod's
process output to a file, and `source(namespace, pod)` says where (the `job_runner`
fixture sets it; without a source every log is empty). Answered as kube-apiserver 1.32
answers: `text/plain`; 404 for an unknown Pod; 400 `container "c" in pod "p" is waiting to
start: REASON` until its container has run; 400 for a `container` the Pod does not have;
`tailLines`; `follow=true` streams the output as it grows and ends once the container has
terminated and everything is sent. RBAC is the API filters' (`get` on `pods/log`).

Not emulated: `previous`, `sinceSeconds`, `sinceTime`, `timestamps`, `limitBytes`,
several containers, log rotation.
"""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import AsyncIterator, Callable
from typing import Final

import kmock

from tests.support.kube.errors import bad_request
from tests.support.kube.paths import ApiPath
from tests.support.kube.resources import KubeObject

LogSource = Callable[[str, str], pathlib.Path | None]
"""`(namespace, pod) -> the file of its output`, or None if it has none."""
FOLLOW_POLL_SECONDS: Final = 0.05
CHUNK_BYTES: Final = 64 * 1024


def is_pod_log(request: kmock.Request) -> bool:
    path = ApiPath.parse(request.url.path)
    return (
        request.method == kmock.method.GET
        and path is not None
        and (path.group, path.plural, path.subresource) == ("", "pods", "log")
        and path.namespace is not None
        and path.name is not None
    )


def _container(pod: KubeObject, asked: str) -> KubeObject:
    containers = (pod.get("spec") or {}).get("containers") or [{}]
    pod_name = pod["metadata"]["name"]
    if not asked:
        if len(containers) > 1:
            names = " ".join(c.get("name", "") for c in containers)
            raise bad_request(
                f"a container name must be specified for pod {pod_name}, choose one of: [{names}]"
            )
        return dict(containers[0])
    for container in containers:
        if container.get("name") == asked:
            return dict(container)
    raise bad_request(f"container {asked} is not valid for pod {pod_name}")


def _state(pod: KubeObject, container: str) -> KubeObject:
    for entry in (pod.get("status") or {}).get("containerStatuses") or []:
        if entry.get("name") == container:
            return dict(entry.get("state") or {})
    return {}


class PodLogs:
    """Serves the `log` subresource of Pods from the store's Pods and a `LogSource`."""

    def __init__(self, pods: Callable[[str, str], KubeObject]) -> None:
        self._pods = pods
        self.source: LogSource | None = None

    def serve(self, request: kmock.Request) -> bytes | AsyncIterator[bytes]:
        path = ApiPath.parse(request.url.path)
        assert path is not None and path.namespace is not None and path.name is not None
        namespace, name = path.namespace, path.name
        pod = self._pods(namespace, name)  # 404 for an unknown Pod
        container = _container(pod, request.params.get("container", ""))["name"]
        state = _state(pod, container)
        if "running" not in state and "terminated" not in state:
            reason = (state.get("waiting") or {}).get("reason") or "ContainerCreating"
            raise bad_request(
                f'container "{container}" in pod "{name}" is waiting to start: {reason}'
            )
        file = self.source(namespace, name) if self.source is not None else None
        tail = request.params.get("tailLines")
        if request.params.get("follow") in ("true", "1") and tail is None:
            return self._follow(namespace, name, container, file)
        text = file.read_bytes() if file is not None and file.exists() else b""
        if tail is not None:
            lines = text.splitlines(keepends=True)
            text = b"".join(lines[len(lines) - int(tail) :] if int(tail) else [])
        return text

    async def _follow(
        self, namespace: str, name: str, container: str, file: pathlib.Path | None
    ) -> AsyncIterator[bytes]:
        yield b""  # the headers go out now, as the kubelet's stream starts at once
        sent = 0
        while True:
            try:
                ended = "terminated" in _state(self._pods(namespace, name), container)
            except kmock.KubernetesError:  # the Pod was deleted: its log goes with it
                return
            if file is not None and file.exists():
                with file.open("rb") as stream:
                    stream.seek(sent)
                    while chunk := stream.read(CHUNK_BYTES):
                        sent += len(chunk)
                        yield chunk
            if ended:
                return
            await asyncio.sleep(FOLLOW_POLL_SECONDS)
