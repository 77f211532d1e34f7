"""The logs of a run's task pods: printed once, or followed until the run ends.

A run's pods are those of the Jobs its Workflow owns (by uid, so a Workflow deleted and
made again under the same name never shows its predecessor's pods), found by the
``troupe.dev/workflow`` label; a task's are those labelled with it or one of its units.
Lines carry the pod's unit and attempt (``research[2]``) and come in task order.

Following runs one reader thread per pod (at most ``MAX_FOLLOWED_PODS``), finds new
pods every ``POLL_SECONDS`` and ends when the run has finished and every pod's log has
been read to its end. A stream that breaks or stays silent for ``IDLE_SECONDS`` is opened
again and the lines already printed are skipped (task logs are small: this counts lines
rather than trusting timestamps). A container that has not started yet is waited for while
the run goes on. It never writes to the cluster.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Final

from troupe.errors import InvalidRequest, NotFound, TroupeError
from troupe.kube import Body, Kube, resource_path
from troupe.runs import finished, metadata, parent_of, task_order
from troupe_operator.api import INSTANCE_SEPARATOR
from troupe_operator.workflow.naming import LABEL_ATTEMPT, LABEL_TASK, LABEL_WORKFLOW

MAX_FOLLOWED_PODS: Final = 64
POLL_SECONDS: Final = 1.0
IDLE_SECONDS: Final = 60.0
RETRY_START_SECONDS: Final = 0.2
RETRY_MAX_SECONDS: Final = 2.0
MAX_STREAM_FAILURES: Final = 10
"""A pod's log that cannot be read this many times in a row is given up on, with the error."""
JOB_NAME_LABELS: Final = ("batch.kubernetes.io/job-name", "job-name")
ENDED_POD_PHASES: Final = frozenset({"Succeeded", "Failed"})


@dataclass(frozen=True)
class TaskPod:
    """One attempt's pod."""

    unit: str
    attempt: int
    pod: str
    namespace: str

    @property
    def label(self) -> str:
        return f"{self.unit}[{self.attempt}]"


Emit = Callable[[TaskPod, str], None]
"""Receives each log line (without its newline) with the pod it came from."""
Note = Callable[[str], None]
"""Receives one line about the logs themselves (a container not started yet)."""


def _belongs(unit: str, task: str | None) -> bool:
    return task is None or unit == task or unit.startswith(task + INSTANCE_SEPARATOR)


def task_pods(kube: Kube, workflow: Body, task: str | None = None) -> list[TaskPod]:
    """The pods of the run's Jobs (of ``task`` and its units only, if given), in task order."""
    meta = metadata(workflow)
    namespace, run, uid = str(meta["namespace"]), str(meta["name"]), meta.get("uid")
    selector = f"{LABEL_WORKFLOW}={run}"
    what = f"the Jobs of workflow {run!r}"
    jobs = kube.list(resource_path("batch/v1", "jobs", namespace), what, selector)
    owned = {
        job["metadata"]["name"]
        for job in jobs
        if any(ref.get("uid") == uid for ref in job["metadata"].get("ownerReferences") or [])
    }
    what = f"the pods of workflow {run!r}"
    found = []
    for pod in kube.list(resource_path("v1", "pods", namespace), what, selector):
        labels = pod["metadata"].get("labels") or {}
        unit = str(labels.get(LABEL_TASK) or "")
        job = next((labels[key] for key in JOB_NAME_LABELS if key in labels), None)
        if job in owned and _belongs(unit, task):
            attempt = int(labels.get(LABEL_ATTEMPT) or 0)
            found.append((pod["metadata"].get("creationTimestamp") or "", unit, attempt, pod))
    order = {name: index for index, name in enumerate(task_order(workflow))}

    def rank(entry: tuple[str, str, int, Body]) -> tuple[int, str, int, str]:
        created, unit, attempt, _ = entry
        return order.get(parent_of(unit), len(order)), unit, attempt, created

    return [
        TaskPod(unit, attempt, str(pod["metadata"]["name"]), namespace)
        for _, unit, attempt, pod in sorted(found, key=rank)
    ]


def _log_path(pod: TaskPod) -> str:
    return resource_path("v1", "pods", pod.namespace, pod.pod) + "/log"


def print_logs(kube: Kube, pods: list[TaskPod], emit: Emit, note: Note) -> None:
    """Each pod's log as it is now."""
    for pod in pods:
        try:
            text = kube.text(_log_path(pod), f"the log of pod {pod.pod!r}")
        except NotFound:
            continue  # deleted since it was listed
        except InvalidRequest as waiting:  # 400: its container has not started
            note(f"{pod.label}: no log: {waiting}")
            continue
        for line in text.splitlines():
            emit(pod, line)


@dataclass
class _Following:
    """What the reader threads share."""

    kube: Kube
    emit: Emit
    lock: threading.Lock = field(default_factory=threading.Lock)
    run_ended: threading.Event = field(default_factory=threading.Event)
    errors: list[TroupeError] = field(default_factory=list)
    readers: dict[str, threading.Thread] = field(default_factory=dict)

    def say(self, pod: TaskPod, line: str) -> None:
        with self.lock:
            self.emit(pod, line)

    def start(self, pod: TaskPod) -> None:
        if pod.pod in self.readers:
            return
        if len(self.readers) >= MAX_FOLLOWED_PODS:
            raise InvalidRequest(
                f"the run has more than {MAX_FOLLOWED_PODS} task pods to follow; "
                "name a task, or read the logs without -f"
            )
        reader = threading.Thread(target=self.read, args=(pod,), daemon=True)
        self.readers[pod.pod] = reader
        reader.start()

    def read(self, pod: TaskPod, sleep: Callable[[float], None] = time.sleep) -> None:
        """Follow one pod's log to its end (the thread's body)."""
        printed, failures, pause = 0, 0, RETRY_START_SECONDS
        what = f"the log of pod {pod.pod!r}"
        while True:
            try:
                for index, line in enumerate(self._stream(pod, what), start=1):
                    if index > printed:
                        self.say(pod, line)
                        printed = index
                if self._ended(pod):
                    return
                failures = 0
            except NotFound:
                return  # the pod is gone, and its log with it
            except InvalidRequest:  # not started yet
                if self.run_ended.is_set():
                    return
            except TroupeError as error:
                failures += 1
                if failures >= MAX_STREAM_FAILURES:
                    with self.lock:
                        self.errors.append(error)
                    return
            sleep(pause)
            pause = min(2 * pause, RETRY_MAX_SECONDS)

    def _stream(self, pod: TaskPod, what: str) -> Iterator[str]:
        with self.kube.stream(_log_path(pod), what, {"follow": "true"}, IDLE_SECONDS) as lines:
            for line in lines:
                yield line.decode(errors="replace")

    def _ended(self, pod: TaskPod) -> bool:
        path = resource_path("v1", "pods", pod.namespace, pod.pod)
        found = self.kube.get(path, f"pod {pod.pod!r}")
        return (found.get("status") or {}).get("phase") in ENDED_POD_PHASES


def follow_logs(
    kube: Kube,
    read_workflow: Callable[[], Body],
    task: str | None,
    emit: Emit,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Every pod's log as it is written, new pods included, until the run has ended and
    every log has been read; the first error a reader gave up with is raised at the end."""
    following = _Following(kube, emit)
    while True:
        workflow = read_workflow()
        ended = finished(workflow)
        for pod in task_pods(kube, workflow, task):
            following.start(pod)
        if ended:
            following.run_ended.set()
            for reader in following.readers.values():
                reader.join()
            break
        sleep(POLL_SECONDS)
    if following.errors:
        raise following.errors[0]
