"""The operator's entry point: ``kopf run -m troupe_operator.main``.

Importing this module only registers the handlers on kopf's default
registry: the metrics endpoint (:mod:`troupe_operator.metrics_endpoint`),
then the controllers between the leader election's campaign and its release
(:mod:`troupe_operator.leadership`); it reads no settings and opens no
connection. When the operator starts, the installation's settings are read
from the environment (a bad one stops it with the variable's name) and the
Kubernetes client is built from the pod's ServiceAccount, or a kubeconfig
outside a cluster.
"""

from __future__ import annotations

from typing import Final

import kopf
from kubernetes.aio import client

from troupe_operator import __version__
from troupe_operator.controller.config import OperatorConfig
from troupe_operator.controller.handlers import api_client_from_environment, register
from troupe_operator.leadership import campaign_first, release_last
from troupe_operator.metrics_endpoint import serve_first

USER_AGENT: Final = f"troupe-operator/{__version__}"


async def _connect() -> client.ApiClient:
    return await api_client_from_environment(USER_AGENT)


_registry = kopf.get_default_registry()
serve_first(_registry)  # standbys report too
_leadership = campaign_first(_registry, _connect)  # no watch starts before this process leads
register(_registry, OperatorConfig.from_env, _connect)
release_last(_registry, _leadership)
