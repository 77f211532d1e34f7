"""How a cluster verb ends: one exit code per kind of outcome, the same for every verb.

Scripts branch on these (``docs/cli.md`` lists them): argo's 0 and 1 for a run that
succeeded or failed, then one code for each thing a caller would do differently about.
"""

from __future__ import annotations

from typing import Final

from troupe.errors import (
    AlreadyExists,
    Forbidden,
    InvalidRequest,
    NotFound,
    TroupeError,
    Unreachable,
    WaitTimeout,
    WrongPhase,
)

OK: Final = 0
RUN_FAILED: Final = 1
"""The run ended Failed or Error (wait, submit --wait/--watch); or any other failure."""
USAGE: Final = 2
"""Bad arguments, an unreadable or invalid manifest, an unusable kubeconfig, or an object
the API server refused as invalid."""
NOT_FOUND: Final = 3
FORBIDDEN: Final = 4
WRONG_PHASE: Final = 5
TIMEOUT: Final = 6
UNREACHABLE: Final = 7
ALREADY_EXISTS: Final = 8
INTERRUPTED: Final = 130

_BY_ERROR: Final[tuple[tuple[type[TroupeError], int], ...]] = (
    (InvalidRequest, USAGE),
    (NotFound, NOT_FOUND),
    (Forbidden, FORBIDDEN),
    (WrongPhase, WRONG_PHASE),
    (WaitTimeout, TIMEOUT),
    (Unreachable, UNREACHABLE),
    (AlreadyExists, ALREADY_EXISTS),
)


def exit_code(error: TroupeError) -> int:
    return next((code for kind, code in _BY_ERROR if isinstance(error, kind)), RUN_FAILED)
