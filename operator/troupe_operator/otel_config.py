"""OpenTelemetry export, set by the standard ``OTEL_*`` variables, and off unless they ask for it.

The operator and the agent runtime both export spans (the agent also the GenAI
histograms) and must read the same variables the same way, so this module is
shared by both (the agent image has ``troupe_operator``'s lower layers). The
rule, per signal (``traces``, ``metrics``): ``OTEL_<SIGNAL>_EXPORTER`` names the
exporters (``otlp``, ``console``, ``none``); when it is unset, ``otlp`` if an
OTLP endpoint is set (``OTEL_EXPORTER_OTLP_ENDPOINT`` or the signal's own), else
nothing at all: no SDK imported, no processor, no thread. ``OTEL_SDK_DISABLED=true``
turns everything off. OTLP goes over HTTP (``http/protobuf``), the only protocol
installed; the exporter itself reads the endpoint, headers, timeout, compression
and certificates from the environment, as the OpenTelemetry SDK does.

It also says which of these settings a pod the operator starts (a task pod, an
Agent's pod) should be given so that its telemetry goes where the operator's
goes: the endpoints, protocols, exporters, timeouts, compression and export
interval. Never the headers (they carry collectors' credentials) nor
certificate paths (files of the operator's pod), nor the operator's own
service name and resource attributes; nor the sampler: a child follows the
sampling decision its ``traceparent`` carries.

This module refuses to pick a protocol or endpoint of its own, and to pass a
setting it does not know to be harmless to a pod.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import TYPE_CHECKING, Final, TypeVar

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import MetricExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.sdk.trace.id_generator import IdGenerator

OTLP: Final = "otlp"
CONSOLE: Final = "console"
NONE: Final = "none"
HTTP_PROTOBUF: Final = "http/protobuf"
ENDPOINT: Final = "OTEL_EXPORTER_OTLP_ENDPOINT"
PROTOCOL: Final = "OTEL_EXPORTER_OTLP_PROTOCOL"
DISABLED: Final = "OTEL_SDK_DISABLED"
T = TypeVar("T")


class Signal(StrEnum):
    TRACES = "traces"
    METRICS = "metrics"

    def variable(self, suffix: str) -> str:
        """``OTEL_EXPORTER_OTLP_<SIGNAL>_<SUFFIX>``, e.g. the signal's own endpoint."""
        return f"OTEL_EXPORTER_OTLP_{self.upper()}_{suffix}"

    @property
    def exporter_variable(self) -> str:
        return f"OTEL_{self.upper()}_EXPORTER"


CHILD_SETTINGS: Final = (
    DISABLED,
    ENDPOINT,
    PROTOCOL,
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_EXPORTER_OTLP_COMPRESSION",
    "OTEL_METRIC_EXPORT_INTERVAL",
    *(
        name
        for signal in Signal
        for name in (
            signal.exporter_variable,
            signal.variable("ENDPOINT"),
            signal.variable("PROTOCOL"),
            signal.variable("TIMEOUT"),
            signal.variable("COMPRESSION"),
        )
    ),
)
"""The settings a pod the operator starts is given, when the operator has them."""


class OtelConfigError(ValueError):
    """An ``OTEL_*`` setting this installation cannot honour; the message names it."""


def exporters(signal: Signal, environ: Mapping[str, str] = os.environ) -> tuple[str, ...]:
    """The exporters asked for ``signal``: empty when it is off (see the module docstring)."""
    if environ.get(DISABLED, "").strip().lower() == "true":
        return ()
    named = environ.get(signal.exporter_variable)
    if named is None:
        endpoint = environ.get(signal.variable("ENDPOINT")) or environ.get(ENDPOINT)
        names: tuple[str, ...] = (OTLP,) if endpoint else ()
    else:
        names = tuple(dict.fromkeys(part.strip() for part in named.split(",") if part.strip()))
    if NONE in names:
        return ()
    unknown = [name for name in names if name not in (OTLP, CONSOLE)]
    if unknown:
        raise OtelConfigError(
            f"{signal.exporter_variable}={named!r}: unknown exporter {unknown[0]!r} "
            f"(this installation has {OTLP!r}, {CONSOLE!r} and {NONE!r})"
        )
    if OTLP in names:
        variable = signal.variable("PROTOCOL")
        if variable not in environ:
            variable = PROTOCOL
        protocol = environ.get(variable, HTTP_PROTOBUF).strip()
        if protocol != HTTP_PROTOBUF:
            raise OtelConfigError(
                f"{variable}={protocol!r}: only {HTTP_PROTOBUF!r} is installed "
                "(OTLP over HTTP, port 4318 on a collector)"
            )
    return names


def child_environment(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The export settings a pod the operator starts is given (see the module docstring)."""
    return {name: environ[name] for name in CHILD_SETTINGS if name in environ}


def resource(service: str) -> Resource:
    """The SDK's resource, named ``service`` unless ``OTEL_SERVICE_NAME`` or
    ``OTEL_RESOURCE_ATTRIBUTES`` name it."""
    from opentelemetry.sdk.resources import SERVICE_NAME, OTELResourceDetector, Resource

    return Resource.create({SERVICE_NAME: service}).merge(OTELResourceDetector().detect())


def tracer_provider(
    service: str,
    environ: Mapping[str, str] = os.environ,
    id_generator: IdGenerator | None = None,
) -> TracerProvider | None:
    """A tracer provider exporting as ``OTEL_*`` ask (batched), or None when traces are off.

    Its sampler comes from ``OTEL_TRACES_SAMPLER`` (the SDK's default: parent-based,
    always on); it flushes at process exit.
    """
    names = exporters(Signal.TRACES, environ)
    if not names:
        return None
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    def otlp() -> SpanExporter:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()

    provider = TracerProvider(resource=resource(service), id_generator=id_generator)
    for exporter in _made(names, otlp, ConsoleSpanExporter):
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def meter_provider(service: str, environ: Mapping[str, str] = os.environ) -> MeterProvider | None:
    """A meter provider exporting periodically as ``OTEL_*`` ask, or None when metrics are off.

    It exports once more at process exit, so a short task pod's histograms are not lost.
    """
    names = exporters(Signal.METRICS, environ)
    if not names:
        return None
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import (
        ConsoleMetricExporter,
        PeriodicExportingMetricReader,
    )

    def otlp() -> MetricExporter:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        return OTLPMetricExporter()

    readers = [PeriodicExportingMetricReader(e) for e in _made(names, otlp, ConsoleMetricExporter)]
    return MeterProvider(readers, resource=resource(service))


def _made(names: tuple[str, ...], otlp: Callable[[], T], console: Callable[[], T]) -> list[T]:
    """One exporter per name, made by the factory of its kind."""
    return [otlp() if name == OTLP else console() for name in names]
