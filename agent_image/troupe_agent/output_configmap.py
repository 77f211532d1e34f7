"""Write a task's output ConfigMap through the Kubernetes API.

Imported only when a task writes to the cluster, so local runs and the other
mode never pay for the ``kubernetes`` client. A retried attempt may find the
ConfigMap already there; it is then replaced, since the newest attempt wins.
"""

from __future__ import annotations

import json
from typing import Any

from kubernetes import config
from kubernetes.client import CoreV1Api, V1ConfigMap, V1ObjectMeta, V1OwnerReference
from kubernetes.client.exceptions import ApiException

from troupe_operator.api import OUTPUT_KEY, RESULT_KEY, OutputTarget, TaskResult

_CONFLICT = 409


def load_kube_config() -> None:
    """In-cluster credentials in a pod, else ``KUBECONFIG`` or ``~/.kube/config``."""
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]


def output_config_map(target: OutputTarget, text: str, result: TaskResult) -> V1ConfigMap:
    """The ConfigMap that holds a task's output and result."""
    return V1ConfigMap(
        api_version="v1",
        kind="ConfigMap",
        metadata=V1ObjectMeta(
            name=target.config_map,
            namespace=target.namespace,
            labels=target.labels or None,
            owner_references=[_owner_reference(ref) for ref in target.owner_references] or None,
        ),
        data={OUTPUT_KEY: text, RESULT_KEY: json.dumps(result.to_wire())},
    )


def _owner_reference(ref: dict[str, Any]) -> V1OwnerReference:
    return V1OwnerReference(
        api_version=ref["apiVersion"],
        kind=ref["kind"],
        name=ref["name"],
        uid=ref["uid"],
        controller=ref.get("controller"),
        block_owner_deletion=ref.get("blockOwnerDeletion"),
    )


def write_output_config_map(target: OutputTarget, text: str, result: TaskResult) -> None:
    """Create the output ConfigMap, or replace it when an earlier attempt left one."""
    load_kube_config()
    body = output_config_map(target, text, result)
    core = CoreV1Api()
    try:
        core.create_namespaced_config_map(target.namespace, body)
    except ApiException as exc:
        if exc.status != _CONFLICT:
            raise
        core.replace_namespaced_config_map(target.config_map, target.namespace, body)
