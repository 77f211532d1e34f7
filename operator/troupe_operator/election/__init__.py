"""Leader election on a Lease, for the operator's replicas and the agents' supervisor.

Pure asyncio (no Kubernetes client): the caller brings a
:class:`~troupe_operator.election.lease_store.LeaseStore` for its own client,
so the agent image, which has only the synchronous client, can run it too.
See :mod:`troupe_operator.election.elector` for the rules.
"""

from troupe_operator.election.elector import (
    Change,
    ElectionConfig,
    LeaderElector,
    LeadershipLost,
    Observer,
    Transition,
)
from troupe_operator.election.lease_store import (
    Lease,
    LeaseConflict,
    LeaseNotFound,
    LeaseStore,
    LeaseStoreError,
)

__all__ = [
    "Change",
    "ElectionConfig",
    "LeaderElector",
    "LeadershipLost",
    "Lease",
    "LeaseConflict",
    "LeaseNotFound",
    "LeaseStore",
    "LeaseStoreError",
    "Observer",
    "Transition",
]
