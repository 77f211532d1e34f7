"""Election timings from the environment, read the same way by the operator and agent pods.

``TROUPE_LEASE_DURATION_SECONDS`` (whole seconds), ``TROUPE_RENEW_DEADLINE_SECONDS``
and ``TROUPE_RETRY_PERIOD_SECONDS``; each left unset keeps client-go's default.
A value that is not a number, or timings that break the elector's rules, are
a :class:`ValueError` naming the variables, never a silent default.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from troupe_operator.election.elector import ElectionConfig

LEASE_DURATION_ENV: Final = "TROUPE_LEASE_DURATION_SECONDS"
RENEW_DEADLINE_ENV: Final = "TROUPE_RENEW_DEADLINE_SECONDS"
RETRY_PERIOD_ENV: Final = "TROUPE_RETRY_PERIOD_SECONDS"


def election_config_from_env(environ: Mapping[str, str]) -> ElectionConfig:
    """The timings the environment sets, client-go's defaults for the others."""
    defaults = ElectionConfig()
    try:
        return ElectionConfig(
            lease_duration=int(environ.get(LEASE_DURATION_ENV, defaults.lease_duration)),
            renew_deadline=float(environ.get(RENEW_DEADLINE_ENV, defaults.renew_deadline)),
            retry_period=float(environ.get(RETRY_PERIOD_ENV, defaults.retry_period)),
        )
    except ValueError as error:
        raise ValueError(
            f"leader election settings ({LEASE_DURATION_ENV}, {RENEW_DEADLINE_ENV},"
            f" {RETRY_PERIOD_ENV}): {error}"
        ) from None
