"""The OpenTelemetry SDK in an agent process, installed only when the ``OTEL_*`` variables ask.

Task and serve mode call :func:`install` first thing. With no export settings
(the default) nothing is installed and the SDK is never imported: a task pod is
one short process, and its cold start counts. When they ask, the global tracer
and meter providers export as :mod:`troupe_operator.otel_config` reads them,
under the service name ``troupe-agent`` unless ``OTEL_SERVICE_NAME`` says
otherwise, and flush at process exit (so a task's spans leave before its pod
ends). Settings this installation cannot honour turn telemetry off with an
error in the log, never the task: tracing is not worth a failed run.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Final

from troupe_operator import otel_config

SERVICE: Final = "troupe-agent"

log = logging.getLogger(__name__)


def install(environ: Mapping[str, str] = os.environ) -> None:
    """Install the SDK's providers for what ``OTEL_*`` ask; nothing when they ask nothing."""
    try:
        tracer_provider = otel_config.tracer_provider(SERVICE, environ)
        meter_provider = otel_config.meter_provider(SERVICE, environ)
    except otel_config.OtelConfigError as error:
        log.error("OpenTelemetry export is off: %s", error)
        return
    if tracer_provider is not None:
        from opentelemetry import trace

        trace.set_tracer_provider(tracer_provider)
    if meter_provider is not None:
        from opentelemetry import metrics

        metrics.set_meter_provider(meter_provider)
