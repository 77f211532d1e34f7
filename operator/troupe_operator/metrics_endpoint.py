"""The operator's ``/metrics``, served by the leader and the standbys alike.

A standby's gauge ``leader_election_master_status`` is as telling as the
leader's (alerts fire on ``sum by (name) (...) != 1``), so the endpoint starts
before the campaign: :func:`serve_first` registers a kopf startup handler that
must be registered before :func:`troupe_operator.leadership.campaign_first`.
It serves prometheus-client's default registry with its own threaded server
(``start_http_server``): the client library's server rather than our own,
and a thread so that a busy event loop never delays a scrape. It serves no
``<name>_created`` series (prometheus-client's creation time of each counter and
histogram, which doubles a counter's series in the text format; controller-runtime
serves none either).

Settings: ``TROUPE_METRICS_PORT`` (8080; ``0`` turns the endpoint off) and
``TROUPE_METRICS_ADDRESS`` (``0.0.0.0``). A port that is taken stops the
operator at start-up with the port in the message. This module refuses to
define metrics; each layer registers its own.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Final

import kopf
from prometheus_client import disable_created_metrics, start_http_server

from troupe_operator.controller.config import ConfigError

logger = logging.getLogger(__name__)

PORT_ENV: Final = "TROUPE_METRICS_PORT"
ADDRESS_ENV: Final = "TROUPE_METRICS_ADDRESS"
DEFAULT_PORT: Final = 8080


def metrics_port(environ: Mapping[str, str] = os.environ) -> int:
    """The port to serve on; 0 when the endpoint is off."""
    text = environ.get(PORT_ENV, str(DEFAULT_PORT)).strip()
    if not text.isdigit() or int(text) > 65535:
        raise ConfigError(f"{PORT_ENV}={text!r} is not a port number (0 turns metrics off)")
    return int(text)


def serve_first(registry: kopf.OperatorRegistry) -> None:
    """Register the endpoint's start and stop; call before the campaign is registered."""
    servers = []

    @kopf.on.startup(registry=registry)
    def serve_metrics(**_: object) -> None:
        port = metrics_port()
        if port == 0:
            logger.info("metrics endpoint off (%s=0)", PORT_ENV)
            return
        address = os.environ.get(ADDRESS_ENV, "0.0.0.0")
        disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped upstream
        try:
            server, _thread = start_http_server(port, address)
        except OSError as error:
            raise kopf.PermanentError(
                f"cannot serve metrics on {address}:{port} ({PORT_ENV}): {error.strerror}"
            ) from error
        servers.append(server)
        logger.info("serving metrics on http://%s:%d/metrics", address, port)

    @kopf.on.cleanup(registry=registry)
    def stop_metrics(**_: object) -> None:
        for server in servers:
            server.shutdown()
