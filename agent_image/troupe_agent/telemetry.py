"""OpenTelemetry spans and metrics for model calls, named by the GenAI semantic conventions.

Only ``opentelemetry-api`` is used: without a configured SDK every call here is
a no-op, so the image needs no exporter. A task pod's ``TRACEPARENT`` (set by
the operator) makes the task's spans children of the workflow's trace.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from troupe_agent.errors import CallFailure
from troupe_agent.scrub import one_line
from troupe_agent.usage import CallStats

INSTRUMENTATION_NAME: Final = "troupe_agent"
TRACEPARENT_ENV: Final = "TRACEPARENT"

OPERATION_NAME: Final = "gen_ai.operation.name"
SYSTEM: Final = "gen_ai.system"
REQUEST_MODEL: Final = "gen_ai.request.model"
INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
TOKEN_TYPE: Final = "gen_ai.token.type"
ERROR_TYPE: Final = "error.type"


def parent_context_from_env() -> Context | None:
    """The trace context the operator passed in ``TRACEPARENT``, if any."""
    traceparent = os.environ.get(TRACEPARENT_ENV)
    if not traceparent:
        return None
    return TraceContextTextMapPropagator().extract({"traceparent": traceparent})


class GenAITelemetry:
    """Spans around model calls and the ``gen_ai.client.*`` histograms."""

    def __init__(
        self,
        system: str,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        self._system = system
        self._tracer = trace.get_tracer(INSTRUMENTATION_NAME, tracer_provider=tracer_provider)
        meter = metrics.get_meter(INSTRUMENTATION_NAME, meter_provider=meter_provider)
        self._token_usage = meter.create_histogram(
            "gen_ai.client.token.usage", unit="{token}", description="Tokens used per model call."
        )
        self._duration = meter.create_histogram(
            "gen_ai.client.operation.duration", unit="s", description="Duration of model calls."
        )

    @contextmanager
    def agent_span(self, agent: str, parent: Context | None = None) -> Iterator[None]:
        """A span around one whole agent run (task or request)."""
        with self._tracer.start_as_current_span(
            f"invoke_agent {agent}",
            context=parent,
            kind=trace.SpanKind.INTERNAL,
            attributes={OPERATION_NAME: "invoke_agent", SYSTEM: self._system},
        ):
            yield

    @contextmanager
    def chat_span(self, model: str) -> Iterator[trace.Span]:
        """A client span around one chat call.

        Exceptions are not recorded by OpenTelemetry itself (a provider's error text may
        echo the key); :meth:`record_failure` records the scrubbed status instead.
        """
        with self._tracer.start_as_current_span(
            f"chat {model}",
            kind=trace.SpanKind.CLIENT,
            attributes={OPERATION_NAME: "chat", SYSTEM: self._system, REQUEST_MODEL: model},
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            yield span

    def record_success(self, span: trace.Span, model: str, stats: CallStats) -> None:
        span.set_attribute(INPUT_TOKENS, stats.usage.input_tokens)
        span.set_attribute(OUTPUT_TOKENS, stats.usage.output_tokens)
        attributes = self._attributes(model)
        self._duration.record(stats.latency_seconds, attributes)
        for token_type, count in (
            ("input", stats.usage.input_tokens),
            ("output", stats.usage.output_tokens),
        ):
            self._token_usage.record(count, {**attributes, TOKEN_TYPE: token_type})

    def record_failure(
        self, span: trace.Span, model: str, failure: CallFailure, seconds: float
    ) -> None:
        span.set_attribute(ERROR_TYPE, failure.status)
        span.set_status(trace.StatusCode.ERROR, one_line(failure.detail))
        self._duration.record(seconds, {**self._attributes(model), ERROR_TYPE: failure.status})

    def _attributes(self, model: str) -> dict[str, str]:
        return {OPERATION_NAME: "chat", SYSTEM: self._system, REQUEST_MODEL: model}
