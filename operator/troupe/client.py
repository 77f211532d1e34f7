"""A small Python client for Troupe runs, over the Kubernetes API and nothing else.

``Troupe`` submits Workflows, reads, lists, watches and waits for them, reads their
outputs and task logs, and asks them to stop, suspend, resume or retry. Everything goes
through the API server with the caller's own kubeconfig identity, so RBAC decides what
each caller may do, exactly as for ``kubectl``; there is no other server. Objects are the
JSON the server sent (plain dicts). Every API call is bounded (``timeout_seconds``),
watches reconnect across breaks and ``410 Gone``, and every failure is a
:mod:`troupe.errors` error with one line to show. The ``troupe`` command is built on it::

    from troupe.client import Troupe

    with Troupe.connect(namespace="research-dev") as troupe:
        run = troupe.submit(workflow)                 # a Workflow as a dict
        done = troupe.wait(run["metadata"]["name"], timeout_seconds=600)
        print(troupe.outputs(done["metadata"]["name"]))

It does not apply arbitrary manifests (``create_if_absent`` takes Troupe's own kinds
only), delete runs, or read Secrets.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import Final

from troupe import control, logs, outputs
from troupe.bounds import DEFAULT_TIMEOUT_SECONDS
from troupe.connection import Connection, connect
from troupe.errors import AlreadyExists, InvalidRequest, NotFound, WaitTimeout
from troupe.kube import Body, Kube, resource_path
from troupe.runs import finished, metadata, phase, status, task_order, unit_statuses
from troupe.watching import follow
from troupe_operator.api import API_VERSION, GROUP
from troupe_operator.api.crd import KINDS

WORKFLOWS: Final = "workflows"


PLURALS: Final = {kind.kind: kind.plural for kind in KINDS}


class Troupe:
    """Troupe runs in one cluster, as one identity, in one namespace unless told otherwise."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.kube = Kube(connection)

    @classmethod
    def connect(
        cls,
        kubeconfig: str | None = None,
        context: str | None = None,
        namespace: str | None = None,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> Troupe:
        """The cluster ``kubectl`` would talk to with the same flags (see ``troupe.connection``)."""
        return cls(connect(kubeconfig, context, namespace, timeout_seconds))

    def __enter__(self) -> Troupe:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self.connection.close()

    @property
    def namespace(self) -> str:
        return self.connection.namespace

    def _collection(self, plural: str = WORKFLOWS, namespace: str | None = None) -> str:
        return resource_path(API_VERSION, plural, namespace or self.namespace)

    def _path(self, name: str) -> str:
        return f"{self._collection()}/{name}"

    def _what(self, name: str, kind: str = "workflow", namespace: str | None = None) -> str:
        return f"{kind} {name!r} in namespace {namespace or self.namespace!r}"

    # Writing.

    def submit(self, workflow: Body) -> Body:
        """Create the Workflow (in its own namespace, else the client's); the created object."""
        return self._create(workflow)

    def create_if_absent(self, obj: Body) -> bool:
        """Create a Troupe object (an Agent, a WorkflowTemplate) unless one of its name
        exists, which is left as it is; whether it was created."""
        try:
            self._create(obj)
        except AlreadyExists:
            return False
        return True

    def _create(self, obj: Body) -> Body:
        kind = str(obj.get("kind") or "")
        if obj.get("apiVersion") != API_VERSION or kind not in PLURALS:
            raise InvalidRequest(f"{kind}: only {GROUP} objects are created here")
        meta = metadata(obj)
        namespace = str(meta.get("namespace") or self.namespace)
        name = str(meta.get("name") or meta.get("generateName") or "")
        what = self._what(name, kind.lower(), namespace)
        body = {**obj, "metadata": {**meta, "namespace": namespace}}
        return self.kube.create(self._collection(PLURALS[kind], namespace), body, what)

    def stop(self, name: str, message: str) -> Body:
        """Ask the run to stop (WrongPhase once it has finished)."""
        return control.stop(self.kube, self._path(name), self._what(name), message)

    def suspend(self, name: str) -> Body:
        """Ask the run to start nothing new (WrongPhase once it has finished)."""
        return control.suspend(self.kube, self._path(name), self._what(name))

    def resume(self, name: str) -> Body:
        """Withdraw a suspension (WrongPhase when the run is not suspended)."""
        return control.resume(self.kube, self._path(name), self._what(name))

    def retry(self, name: str) -> Body:
        """Ask a Failed run to run again what did not succeed (WrongPhase unless Failed)."""
        return control.retry(self.kube, self._path(name), self._what(name))

    # Reading.

    def get(self, name: str) -> Body:
        return self.kube.get(self._path(name), self._what(name))

    def list(self, all_namespaces: bool = False, phases: Sequence[str] = ()) -> list[Body]:
        """Workflows of the namespace (or all), newest first, of the given phases if any."""
        if all_namespaces:
            path, where = resource_path(API_VERSION, WORKFLOWS, None), "all namespaces"
        else:
            path, where = self._collection(), f"namespace {self.namespace!r}"
        found = self.kube.list(path, f"workflows in {where}")
        chosen = [workflow for workflow in found if not phases or phase(workflow) in phases]
        return sorted(
            chosen,
            key=lambda workflow: (
                str(metadata(workflow).get("creationTimestamp") or ""),
                str(metadata(workflow).get("name")),
            ),
            reverse=True,
        )

    def watch(self, name: str, timeout_seconds: float | None = None) -> Iterator[Body]:
        """The Workflow now and at each change, until ``timeout_seconds`` have passed
        (or forever); NotFound when it is deleted."""
        deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
        return follow(self.kube, self._collection(), name, self._what(name), deadline)

    def wait(
        self,
        name: str,
        timeout_seconds: float | None = None,
        on_change: Callable[[Body], None] | None = None,
    ) -> Body:
        """The Workflow once it has finished (Succeeded, Failed or Error); WaitTimeout if it
        has not within ``timeout_seconds``. ``on_change`` sees every version on the way."""
        last: Body | None = None
        for last in self.watch(name, timeout_seconds):
            if on_change is not None:
                on_change(last)
            if finished(last):
                return last
        state = phase(last or {})
        progress = status(last or {}).get("progress")
        shown = f"{state}, {progress} tasks" if progress else state
        limit = round(timeout_seconds or 0, 1)
        raise WaitTimeout(f"{self._what(name)} did not finish within {limit:g}s (it is {shown})")

    def outputs(self, name: str, task: str | None = None) -> dict[str, str]:
        """Output text by task (or unit) key: of ``task``, or of the run's final tasks."""
        return outputs.outputs(self.kube, self.get(name), task)

    def pods(self, name: str, task: str | None = None) -> builtins.list[logs.TaskPod]:
        """The run's task pods (of ``task`` and its units only, if given), in task order."""
        workflow = self.get(name)
        pods = logs.task_pods(self.kube, workflow, task)
        known = set(task_order(workflow)) | set(unit_statuses(workflow))
        if task is not None and task not in known:
            raise NotFound(f"{self._what(name)} has no task {task!r}")
        return pods

    def logs(
        self,
        name: str,
        task: str | None,
        emit: logs.Emit,
        note: logs.Note,
        follow_run: bool = False,
    ) -> None:
        """Each task pod's log line by line to ``emit``; with ``follow_run``, as they are
        written, until the run has finished and every log is read."""
        pods = self.pods(name, task)
        if follow_run:
            logs.follow_logs(self.kube, lambda: self.get(name), task, emit)
        else:
            logs.print_logs(self.kube, pods, emit, note)
