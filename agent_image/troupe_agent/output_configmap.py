"""Task outputs as ConfigMaps: the upstream ones read, this task's own written.

Inside the cluster a task's output lives in one ConfigMap per task (keys
``OUTPUT_KEY`` and ``RESULT_KEY``), owned by the Workflow and stamped with the
writing attempt's report and number (``REPORT_ANNOTATION``,
``ATTEMPT_ANNOTATION``), which the operator reads as metadata. A task reads each
upstream task's ConfigMap once and writes its own; both go through
:class:`~troupe_agent.kube_api.KubeCaller`, so a busy API costs retries, not
the attempt. An earlier attempt's ConfigMap is replaced (the newest attempt
wins). The ownerReferences are set without ``blockOwnerDeletion``, which the
pod's identity may not set; this module refuses to pass it on even when asked.
A missing upstream output is permanent: it will not come back.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

from kubernetes.client import CoreV1Api, V1ConfigMap, V1ObjectMeta, V1OwnerReference
from kubernetes.client.exceptions import ApiException

from troupe_agent.failures import TaskFailed
from troupe_agent.kube_api import TASK_USER_AGENT, KubeApiError, KubeCaller, connect
from troupe_agent.retry import Deadline
from troupe_operator.api import (
    ATTEMPT_ANNOTATION,
    CACHE_CREATED_ANNOTATION,
    CACHE_DIGEST_ANNOTATION,
    CACHE_KEY_LABEL,
    CACHE_MODEL_ANNOTATION,
    EXIT_PERMANENT,
    EXIT_RETRYABLE,
    OUTPUT_KEY,
    REPORT_ANNOTATION,
    RESULT_KEY,
    CacheTarget,
    OutputTarget,
    TaskReport,
    TaskResult,
)

log = logging.getLogger(__name__)

_NOT_FOUND: Final = 404
_CONFLICT: Final = 409


def output_config_map(
    target: OutputTarget, text: str, result: TaskResult, report: TaskReport, attempt: int
) -> V1ConfigMap:
    """The ConfigMap that holds a task's output and result, stamped with the attempt's report."""
    return V1ConfigMap(
        api_version="v1",
        kind="ConfigMap",
        metadata=V1ObjectMeta(
            name=target.config_map,
            namespace=target.namespace,
            labels=target.labels or None,
            annotations={REPORT_ANNOTATION: report.encode(), ATTEMPT_ANNOTATION: str(attempt)},
            owner_references=[_owner_reference(ref) for ref in target.owner_references] or None,
        ),
        data={OUTPUT_KEY: text, RESULT_KEY: json.dumps(result.to_wire())},
    )


def cache_config_map(
    target: OutputTarget, entry: CacheTarget, text: str, result: TaskResult, report: TaskReport
) -> V1ConfigMap:
    """A memoized task's output kept for later runs of the namespace: no owner (it outlives
    its Workflow; the operator collects it), labelled with its key, stamped with its digest,
    time, model and report."""
    assert report.digest is not None  # success reports carry it
    body = output_config_map(target, text, result, report, attempt=1)
    body.metadata = V1ObjectMeta(
        name=entry.name,
        namespace=target.namespace,
        labels={CACHE_KEY_LABEL: entry.key},
        annotations={
            CACHE_DIGEST_ANNOTATION: report.digest,
            CACHE_CREATED_ANNOTATION: datetime.now(UTC).isoformat(timespec="seconds"),
            CACHE_MODEL_ANNOTATION: result.model[:253],
            REPORT_ANNOTATION: report.encode(),
        },
    )
    return body


def _owner_reference(ref: dict[str, Any]) -> V1OwnerReference:
    return V1OwnerReference(
        api_version=ref["apiVersion"],
        kind=ref["kind"],
        name=ref["name"],
        uid=ref["uid"],
        controller=ref.get("controller"),
    )


class OutputConfigMaps:
    """Reads upstream outputs from, and writes this task's output to, ConfigMaps."""

    def __init__(self, core: CoreV1Api, caller: KubeCaller, namespace: str) -> None:
        self._core = core
        self._caller = caller
        self._namespace = namespace

    @classmethod
    def connect(cls, namespace: str, deadline: Deadline) -> OutputConfigMaps:
        """Connected with the pod's credentials (else the kubeconfig), calls bounded by deadline."""
        try:
            core = CoreV1Api(connect(TASK_USER_AGENT))
        except KubeApiError as error:
            raise TaskFailed(str(error), EXIT_PERMANENT) from error
        return cls(core, KubeCaller(deadline), namespace)

    def read(self, task: str, config_map: str) -> str:
        """The output text of upstream ``task``, from its ConfigMap in the task's namespace."""
        where = f"upstream task '{task}' (ConfigMap {config_map})"
        try:
            found = self._caller.call(
                lambda timeout: self._core.read_namespaced_config_map(
                    config_map, self._namespace, _request_timeout=timeout
                ),
                f"reading the output of {where}",
            )
        except KubeApiError as error:
            if error.status == _NOT_FOUND:
                raise TaskFailed(f"the output of {where} is gone", EXIT_PERMANENT) from error
            raise TaskFailed(
                f"cannot read the output of {where}: {error}", _exit_code(error)
            ) from error
        text = (found.data or {}).get(OUTPUT_KEY)
        if not isinstance(text, str):
            raise TaskFailed(f"the output of {where} has no '{OUTPUT_KEY}' key", EXIT_PERMANENT)
        return text

    def write(
        self, target: OutputTarget, text: str, result: TaskResult, report: TaskReport, attempt: int
    ) -> None:
        """Create the output ConfigMap, or replace the one an earlier attempt left."""
        body = output_config_map(target, text, result, report, attempt)
        where = f"output ConfigMap {target.namespace}/{target.config_map}"
        try:
            self._caller.call(self._creating(body, replace=True), f"writing the {where}")
        except KubeApiError as error:
            raise TaskFailed(f"cannot write {where}: {error}", _exit_code(error)) from error

    def cache(
        self,
        target: OutputTarget,
        entry: CacheTarget,
        text: str,
        result: TaskResult,
        report: TaskReport,
    ) -> None:
        """Create the cache entry; one that exists is kept (same key, same work). The output
        is already written, so a failure here costs later runs a cache miss, not this task."""
        body = cache_config_map(target, entry, text, result, report)
        try:
            self._caller.call(
                self._creating(body, replace=False), f"caching the output as {entry.name}"
            )
        except KubeApiError as error:
            log.warning("output not cached (later runs will not be served it): %s", error)

    def _creating(self, body: V1ConfigMap, replace: bool) -> Callable[[float], None]:
        """A call creating ``body``; one of its name that exists is replaced, or kept."""
        assert body.metadata is not None and body.metadata.name and body.metadata.namespace
        name: str = body.metadata.name
        namespace: str = body.metadata.namespace

        def create(timeout: float) -> None:
            try:
                self._core.create_namespaced_config_map(namespace, body, _request_timeout=timeout)
            except ApiException as exc:
                if exc.status != _CONFLICT:
                    raise
                if replace:
                    self._core.replace_namespaced_config_map(
                        name, namespace, body, _request_timeout=timeout
                    )

        return create


def _exit_code(error: KubeApiError) -> int:
    return EXIT_RETRYABLE if error.retryable else EXIT_PERMANENT
