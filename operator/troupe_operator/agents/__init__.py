"""The Agent serve core: pure rules turning an Agent into its Deployment, Service and RBAC.

``reconcile(Observation) -> Decision`` is the whole interface; the kopf shell
(``troupe_operator.controller.agents``) observes, calls it and executes the
writes. Nothing here performs I/O or reads the clock, and nothing here
imports the Kubernetes client, kopf or the shell.
"""

from troupe_operator.agents.children import (
    LABEL_AGENT,
    SERVE_PORT,
    AgentRef,
    Child,
    ServeSettings,
)
from troupe_operator.agents.core import Decision, Observation, Write, reconcile

__all__ = [
    "LABEL_AGENT",
    "SERVE_PORT",
    "AgentRef",
    "Child",
    "Decision",
    "Observation",
    "ServeSettings",
    "Write",
    "reconcile",
]
