"""The least-privilege identity task pods run as, in each namespace that runs tasks.

A task pod needs exactly one permission: to write its output ConfigMap. The
ServiceAccount, Role and RoleBinding here grant that and nothing else; they
are created once per namespace and left alone after that (a Tenant may own
them instead).
"""

from __future__ import annotations

from typing import Any

from troupe_operator.controller.kube import Kube, path

RBAC = "rbac.authorization.k8s.io/v1"
MANAGED = {"app.kubernetes.io/managed-by": "troupe"}


def _objects(namespace: str, name: str) -> list[tuple[str, dict[str, Any]]]:
    metadata = {"name": name, "namespace": namespace, "labels": MANAGED}
    return [
        (
            path("v1", "serviceaccounts", namespace),
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata},
        ),
        (
            path(RBAC, "roles", namespace),
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": metadata,
                "rules": [
                    {
                        "apiGroups": [""],
                        "resources": ["configmaps"],
                        "verbs": ["create", "get", "update", "patch"],
                    }
                ],
            },
        ),
        (
            path(RBAC, "rolebindings", namespace),
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": metadata,
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
            },
        ),
    ]


def ensure_task_identity(kube: Kube, namespace: str, name: str) -> None:
    """Create the task ServiceAccount and its Role and RoleBinding if missing."""
    for resource, body in _objects(namespace, name):
        kube.create(resource, body)
