"""The Kubernetes objects a run creates: its pods' identity, its recorded spec, its Jobs.

Built as plain dicts from the core's actions. Least privilege is the rule:
each run's task pods run as their own ServiceAccount, whose Role lets them
get, update and patch exactly the ConfigMaps that hold this run's outputs
(by name) and create ConfigMaps (Kubernetes RBAC cannot limit create by
name; a squatted name is replaced by its rightful writer, which may update
it). Nothing else: no Secrets, no list or watch, no other run's objects.
The API key reaches a pod only as an environment variable taken from the
Agent's Secret by the kubelet, and so does each input the run takes from a
Secret (``api.sources.secret_inputs``). Task pods are locked down the way a restricted
Pod Security namespace demands; a failure no retry can cure (exit code
EXIT_PERMANENT) fails the Job at once through its podFailurePolicy. When the
operator traces, a task pod's environment also names the trace its attempt
belongs to (``TRACEPARENT``) and where to export (``controller.tracing``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from troupe_operator.api import (
    EXIT_PERMANENT,
    INPUT_ENV,
    SPEC_KEY,
    SPEC_MOUNT,
    InputFrom,
    secret_inputs,
)
from troupe_operator.api.cache import CACHE_ENTRY_PREFIX
from troupe_operator.controller.config import OperatorConfig
from troupe_operator.workflow import ATTEMPT_AGENT_ANNOTATION, CreateTask, PrepareRun, WorkflowRef

CONTAINER: Final = "agent"
TERMINATION_LOG: Final = "/dev/termination-log"
RBAC_API: Final = "rbac.authorization.k8s.io/v1"

Body = dict[str, Any]


def _metadata(run: WorkflowRef, name: str, labels: dict[str, str]) -> Body:
    return {
        "name": name,
        "namespace": run.namespace,
        "labels": labels,
        "ownerReferences": [run.owner_reference(block_owner_deletion=True)],
    }


def spec_config_map(run: WorkflowRef, action: PrepareRun) -> Body:
    """The spec the run started with; task pods mount it to find their template and inputs."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(run, action.spec_config_map, run.labels()),
        "immutable": True,
        "data": {SPEC_KEY: action.spec.model_dump_json(by_alias=True, exclude_none=True)},
    }


def service_account(run: WorkflowRef, action: PrepareRun) -> Body:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _metadata(run, action.service_account, run.labels()),
    }


def role(run: WorkflowRef, action: PrepareRun) -> Body:
    """Get and write this run's outputs, by name; create ConfigMaps (not limitable by name)."""
    return {
        "apiVersion": RBAC_API,
        "kind": "Role",
        "metadata": _metadata(run, action.service_account, run.labels()),
        "rules": [
            {
                "apiGroups": [""],
                "resources": ["configmaps"],
                "resourceNames": list(action.outputs),
                "verbs": ["get", "update", "patch"],
            },
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]},
        ],
    }


def with_cache_reads(role: Body, entries: Sequence[str]) -> Body | None:
    """``role`` (a run's, as read) also granting ``get`` on these cache entries, by name, and
    on those it granted before; None when it already does. Read only: a run may never alter
    what another will be served."""
    rules = list(role.get("rules") or [])
    granted = [rule for rule in rules if _reads_cache(rule)]
    names = {name for rule in granted for name in rule.get("resourceNames") or ()}
    if names.issuperset(entries):
        return None
    read = {
        "apiGroups": [""],
        "resources": ["configmaps"],
        "resourceNames": sorted(names.union(entries)),
        "verbs": ["get"],
    }
    return {**role, "rules": [rule for rule in rules if not _reads_cache(rule)] + [read]}


def _reads_cache(rule: Body) -> bool:
    names = rule.get("resourceNames") or []
    cached = bool(names) and all(n.startswith(CACHE_ENTRY_PREFIX) for n in names)
    return rule.get("verbs") == ["get"] and cached


def role_binding(run: WorkflowRef, action: PrepareRun) -> Body:
    return {
        "apiVersion": RBAC_API,
        "kind": "RoleBinding",
        "metadata": _metadata(run, action.service_account, run.labels()),
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": action.service_account,
        },
        "subjects": [
            {"kind": "ServiceAccount", "name": action.service_account, "namespace": run.namespace}
        ],
    }


def _from_secret(name: str, secret: str, key: str) -> Body:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def _environment(
    action: CreateTask, telemetry: Mapping[str, str], inputs_from: Sequence[InputFrom]
) -> list[Body]:
    env: list[Body] = [
        {"name": INPUT_ENV, "value": action.task_input.model_dump_json(by_alias=True)}
    ]
    secret = action.task_input.agent.model.api_key_secret_ref
    if secret is not None and action.task_input.api_key_env:
        env.append(_from_secret(action.task_input.api_key_env, secret.name, secret.key))
    for name, source in secret_inputs(inputs_from):
        assert source.secret_key_ref is not None  # secret_inputs yields only those
        env.append(_from_secret(name, source.secret_key_ref.name, source.secret_key_ref.key))
    env.extend({"name": name, "value": value} for name, value in telemetry.items())
    return env


def task_job(
    run: WorkflowRef,
    action: CreateTask,
    config: OperatorConfig,
    telemetry: Mapping[str, str] | None = None,
    inputs_from: Sequence[InputFrom] = (),
) -> Body:
    """The Job that runs one attempt of a task in the agent image's task mode.

    ``telemetry`` is the trace environment of the attempt (``RunTracer.task_environment``);
    ``inputs_from`` are the Secret inputs of the run's recorded spec.
    """
    container = {
        "name": CONTAINER,
        "image": action.task_input.agent.image or config.agent_image,
        "command": list(config.task_command),
        "args": [
            "task",
            "--input-env",
            INPUT_ENV,
            "--spec",
            f"{SPEC_MOUNT}/{SPEC_KEY}",
            "--termination-log",
            TERMINATION_LOG,
        ],
        "env": _environment(action, telemetry or {}, inputs_from),
        "volumeMounts": [{"name": "spec", "mountPath": SPEC_MOUNT, "readOnly": True}],
        "resources": action.task_input.agent.resources.to_wire(),
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    job_spec: Body = {
        "backoffLimit": 0,
        "podFailurePolicy": {
            "rules": [
                {
                    "action": "FailJob",
                    "onExitCodes": {
                        "containerName": CONTAINER,
                        "operator": "In",
                        "values": [EXIT_PERMANENT],
                    },
                }
            ]
        },
        "template": {
            "metadata": {"labels": action.labels},
            "spec": {
                "restartPolicy": "Never",
                "serviceAccountName": action.service_account,
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": 10001,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "containers": [container],
                "volumes": [
                    {
                        "name": "spec",
                        "configMap": {
                            "name": action.spec_config_map,
                            "items": [{"key": SPEC_KEY, "path": SPEC_KEY}],
                        },
                    }
                ],
            },
        },
    }
    if action.active_deadline_seconds is not None:
        job_spec["activeDeadlineSeconds"] = action.active_deadline_seconds
    metadata = _metadata(run, action.job_name, action.labels)
    metadata["annotations"] = {ATTEMPT_AGENT_ANNOTATION: action.task_input.agent_name}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": job_spec}
