"""Which spec a run follows, once it has started.

A run is bound to the spec it started with: editing the tasks of a running
Workflow would leave started Jobs, recorded outputs and the DAG disagreeing.
The run records a hash of its spec in status and the spec itself in a
ConfigMap; a later edit is refused (condition SpecChangeRefused) and the run
goes on with the recorded spec.
"""

from __future__ import annotations

import hashlib
import json

from troupe_operator.api import WorkflowSpec

HASH_CHARS = 16


def spec_hash(spec: WorkflowSpec) -> str:
    """A short, stable hash of everything in a spec."""
    canonical = json.dumps(spec.to_wire(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:HASH_CHARS]
