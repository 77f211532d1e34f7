"""The environment an Agent's serve-mode pods get from the operator: one list for both sides.

The operator writes these variables into the Deployment
(``troupe_operator.agents.children``) and serve mode reads them
(``troupe_agent.serve``, ``troupe_agent.supervision``); naming them once here
keeps the two from drifting apart.
"""

from __future__ import annotations

from typing import Final

SPEC_ENV: Final = "TROUPE_AGENT_SPEC"
"""The AgentSpec as JSON (without ``replicas``)."""
NAME_ENV: Final = "TROUPE_AGENT_NAME"
AGENT_UID_ENV: Final = "TROUPE_AGENT_UID"
"""The Agent's uid, for the ownerReferences of the Conversations its supervisor writes."""
LEASE_ENV: Final = "TROUPE_SUPERVISOR_LEASE"
"""The Lease the pods elect their supervisor with."""
MEMBERS_ENV: Final = "TROUPE_MEMBERS"
"""A supervisor's members as a JSON object: member name → URL of its Service."""
POD_NAME_ENV: Final = "POD_NAME"
POD_NAMESPACE_ENV: Final = "POD_NAMESPACE"
POD_IP_ENV: Final = "POD_IP"
"""From the downward API: the pod's identity in the election, and where it serves."""
