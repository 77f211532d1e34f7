"""The Kubernetes objects that run one task attempt: its input ConfigMap and its Job.

Built as plain dicts from the core's CreateTask action. The pod is locked down
the way a restricted Pod Security namespace demands (non-root, no privilege
escalation, all capabilities dropped, read-only root filesystem); the API key
reaches it only as an environment variable taken from the Agent's Secret; a
failure no retry can cure (exit code EXIT_PERMANENT) fails the Job at once
through its podFailurePolicy.
"""

from __future__ import annotations

from typing import Any, Final

from troupe_operator.api import EXIT_PERMANENT, INPUT_KEY
from troupe_operator.controller.config import OperatorConfig
from troupe_operator.workflow.actions import CreateTask
from troupe_operator.workflow.naming import owner_reference

CONTAINER: Final = "agent"
INPUT_MOUNT: Final = "/etc/troupe/input"
TERMINATION_LOG: Final = "/dev/termination-log"


def _metadata(action: CreateTask, name: str, workflow_uid: str) -> dict[str, Any]:
    workflow = action.task_input.workflow
    return {
        "name": name,
        "namespace": action.task_input.namespace,
        "labels": action.labels,
        "ownerReferences": [owner_reference(workflow, workflow_uid)],
    }


def input_config_map(action: CreateTask, workflow_uid: str) -> dict[str, Any]:
    """The attempt's TaskInput as JSON; it never holds a key (only the env name)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(action, action.input_config_map, workflow_uid),
        "immutable": True,
        "data": {INPUT_KEY: action.task_input.model_dump_json(by_alias=True, exclude_none=True)},
    }


def _environment(action: CreateTask) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = []
    secret = action.agent.model.api_key_secret_ref
    if secret is not None and action.task_input.api_key_env:
        env.append(
            {
                "name": action.task_input.api_key_env,
                "valueFrom": {"secretKeyRef": {"name": secret.name, "key": secret.key}},
            }
        )
    return env


def task_job(action: CreateTask, workflow_uid: str, config: OperatorConfig) -> dict[str, Any]:
    """The Job that runs one attempt of a task in the agent image's task mode."""
    container = {
        "name": CONTAINER,
        "image": action.agent.image or config.agent_image,
        "command": list(config.task_command),
        "args": [
            "task",
            "--input",
            f"{INPUT_MOUNT}/{INPUT_KEY}",
            "--termination-log",
            TERMINATION_LOG,
        ],
        "env": _environment(action),
        "volumeMounts": [{"name": "input", "mountPath": INPUT_MOUNT, "readOnly": True}],
        "resources": action.agent.resources.to_wire(),
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    job_spec: dict[str, Any] = {
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
                "serviceAccountName": config.task_service_account,
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": 10001,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "containers": [container],
                "volumes": [{"name": "input", "configMap": {"name": action.input_config_map}}],
            },
        },
    }
    if action.active_deadline_seconds is not None:
        job_spec["activeDeadlineSeconds"] = action.active_deadline_seconds
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _metadata(action, action.job_name, workflow_uid),
        "spec": job_spec,
    }
