"""The operator's entry point: ``kopf run -m troupe_operator.main``.

Builds the Kubernetes client from the pod's service account (or a kubeconfig
outside a cluster), reads the installation's settings from the environment,
and registers the handlers on kopf's default registry.
"""

from __future__ import annotations

from typing import Any

import kopf
from kubernetes import client, config

from troupe_operator.controller.config import OperatorConfig
from troupe_operator.controller.handlers import register
from troupe_operator.controller.reconciler import WorkflowReconciler


def _api_client() -> client.ApiClient:
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]  # untyped upstream
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    return client.ApiClient()


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.posting.level = 30  # kopf's own events: warnings and errors only
    settings.watching.server_timeout = 300


register(kopf.get_default_registry(), WorkflowReconciler(_api_client(), OperatorConfig.from_env()))
