"""``leader_election_master_status``: client-go's gauge of who leads, under its name and label.

Dashboards and alerts written for Kubernetes components (``sum by (name)
(leader_election_master_status) != 1``) read it unchanged: 1 while this
process leads the Lease ``name``, else 0. A registry holds one such gauge,
shared by every elector registered in it (one per Lease); tests pass their own
registry. The label is the Lease's name, never an identity, so the series
stay bounded.
"""

from __future__ import annotations

from weakref import WeakKeyDictionary

from prometheus_client import REGISTRY, CollectorRegistry, Gauge

_GAUGES: WeakKeyDictionary[CollectorRegistry, Gauge] = WeakKeyDictionary()


def master_status(registry: CollectorRegistry = REGISTRY) -> Gauge:
    """The registry's ``leader_election_master_status`` gauge, registered on first use."""
    gauge = _GAUGES.get(registry)
    if gauge is None:
        gauge = Gauge(
            "leader_election_master_status",
            "1 while this process leads the Lease 'name', else 0.",
            ["name"],
            registry=registry,
        )
        _GAUGES[registry] = gauge
    return gauge
