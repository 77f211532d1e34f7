"""Sample objects for harness tests that must not depend on Troupe's: CRDs in `example.com`
(`crd`, and `widgets.example.com` built with it) and widgets, and Jobs whose container runs a
Python snippet."""

from __future__ import annotations

import sys
from typing import Any

from tests.support.kube.resources import KubeObject

WIDGETS = ("example.com", "v1", "widgets")
FREE_FORM: KubeObject = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


def crd(
    kind: str,
    spec: KubeObject,
    *,
    status: KubeObject = FREE_FORM,
    short_names: tuple[str, ...] = (),
    **version: Any,
) -> KubeObject:
    """A namespaced CRD in `example.com/v1` with these `spec` and `status` schemas.

    Keywords are added to the version: `subresources`, `additionalPrinterColumns`...
    """
    plural = f"{kind.lower()}s"
    schema = {
        "type": "object",
        "properties": {
            "spec": spec,
            "status": status,
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {
                "plural": plural,
                "singular": kind.lower(),
                "kind": kind,
                "shortNames": list(short_names),
            },
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema},
                    **version,
                }
            ],
        },
    }


WIDGET_CRD = crd(
    "Widget",
    {
        "type": "object",
        "required": ["size"],
        "properties": {
            "size": {"type": "integer", "minimum": 0},
            "color": {"type": "string", "default": "blue"},
            "port": {"x-kubernetes-int-or-string": True},
            "note": {"type": "string", "nullable": True},
            "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        },
    },
    short_names=("wd",),
    subresources={"status": {}},
    additionalPrinterColumns=[
        {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ],
)


def widget(name: str, size: int = 1, **spec: object) -> KubeObject:
    return {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": {"size": size, **spec},
    }


def python_job(name: str, code: str, **spec: Any) -> KubeObject:
    """A Job running `python -c code` once (`backoffLimit: 0` unless given).

    `container=` and `volumes=` go into the Pod template, `service_account=` sets its
    `serviceAccountName`; anything else goes into the Job's spec.
    """
    container = {
        "name": "main",
        "image": "python:3.11-slim",
        "command": [sys.executable, "-c", code],
        **spec.pop("container", {}),
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [container],
        "volumes": spec.pop("volumes", []),
    }
    if "service_account" in spec:
        pod_spec["serviceAccountName"] = spec.pop("service_account")
    return {
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            **spec,
            "template": {"metadata": {"labels": {"app": "test"}}, "spec": pod_spec},
        },
    }
