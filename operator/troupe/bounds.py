"""The time bounds a caller of the client may choose, with their defaults and ceilings.

Apart from ``troupe.connection`` so that a command line can offer them without loading the
Kubernetes client.
"""

from __future__ import annotations

from typing import Final

DEFAULT_TIMEOUT_SECONDS: Final = 30.0
"""How long one API call may take (connecting, then reading), unless told otherwise."""
MAX_TIMEOUT_SECONDS: Final = 3600.0
"""The longest bound one API call may be given."""
MAX_WAIT_SECONDS: Final = 7 * 24 * 3600.0
"""The longest a caller may wait for a run (a week)."""
