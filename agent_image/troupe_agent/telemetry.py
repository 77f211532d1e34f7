"""OpenTelemetry spans and metrics of agent runs and model calls, named by the GenAI conventions.

Only ``opentelemetry-api`` is used here: without an SDK (``troupe_agent.otel_setup``
installs one only when ``OTEL_*`` ask) every call is a no-op, and the trace
context still passes through. A run is an ``invoke_agent <agent>`` span
(internal: the agent runs in this process), each model call a ``chat <model>``
client span under it; both carry ``gen_ai.provider.name`` and the request's
model, the run its agent's name, each call its endpoint, request settings,
response model, finish reason and token usage. The histograms
``gen_ai.client.token.usage`` and ``gen_ai.client.operation.duration`` use the
bucket boundaries the conventions recommend. Names and version:
:mod:`troupe_operator.semconv`.

A task pod's run joins the trace named in ``TRACEPARENT`` (set by the operator
in its Job); a serve-mode run joins the caller's ``traceparent`` header, and the
team loop sends its own context on to the members it invokes.

It refuses to record prompts, outputs or exception texts: a provider's error
text may echo the key, so a failed call records its scrubbed one-line status.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final

from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from troupe_agent.errors import CallFailure, ModelCallError
from troupe_agent.scrub import one_line
from troupe_agent.usage import CallStats
from troupe_operator import semconv

INSTRUMENTATION_NAME: Final = "troupe_agent"
TRACEPARENT_ENV: Final = "TRACEPARENT"
PROPAGATOR: Final = TraceContextTextMapPropagator()

Attributes = dict[str, AttributeValue]


def parent_context_from_env() -> Context | None:
    """The trace context the operator passed in ``TRACEPARENT``, if any."""
    traceparent = os.environ.get(TRACEPARENT_ENV)
    if not traceparent:
        return None
    return PROPAGATOR.extract({"traceparent": traceparent})


def parent_context_from_headers(headers: Mapping[str, str]) -> Context | None:
    """The caller's trace context (``traceparent``, ``tracestate``), if it sent one."""
    if "traceparent" not in headers:
        return None
    return PROPAGATOR.extract(
        {name: headers[name] for name in PROPAGATOR.fields if name in headers}
    )


def inject_context(headers: MutableMapping[str, str]) -> None:
    """Add the current trace context to outgoing ``headers`` (nothing when there is none)."""
    PROPAGATOR.inject(headers)


@dataclass(frozen=True)
class ModelTarget:
    """The model an Agent calls, as the conventions describe it; known before any call."""

    provider: str
    model: str
    server_address: str | None = None
    server_port: int | None = None
    temperature: float | None = None
    max_tokens: int | None = None

    def attributes(self, operation: str) -> Attributes:
        """What identifies calls of ``operation`` to this model, on spans and metrics alike."""
        found: Attributes = {
            semconv.OPERATION_NAME: operation,
            semconv.PROVIDER_NAME: self.provider,
            semconv.REQUEST_MODEL: self.model,
        }
        if self.server_address is not None:
            found[semconv.SERVER_ADDRESS] = self.server_address
        if self.server_port is not None:
            found[semconv.SERVER_PORT] = self.server_port
        return found

    def request_attributes(self) -> Attributes:
        """A chat span's attributes: the above and the request's settings."""
        found = self.attributes(semconv.CHAT)
        if self.temperature is not None:
            found[semconv.REQUEST_TEMPERATURE] = self.temperature
        if self.max_tokens is not None:
            found[semconv.REQUEST_MAX_TOKENS] = self.max_tokens
        return found


@dataclass(frozen=True)
class ChatResponse:
    """What a reply says about itself, besides its text: its stats and model, why it ended."""

    stats: CallStats
    model: str | None = None
    finish_reason: str | None = None


class GenAITelemetry:
    """Spans around agent runs and model calls, and the ``gen_ai.client.*`` histograms."""

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        """``None`` providers: the global ones (no-ops unless an SDK is installed)."""
        self._tracer = trace.get_tracer(
            INSTRUMENTATION_NAME, tracer_provider=tracer_provider, schema_url=semconv.SCHEMA_URL
        )
        meter = metrics.get_meter(
            INSTRUMENTATION_NAME, meter_provider=meter_provider, schema_url=semconv.SCHEMA_URL
        )
        self._token_usage = meter.create_histogram(
            semconv.TOKEN_USAGE,
            unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=semconv.TOKEN_USAGE_BUCKETS,
        )
        self._duration = meter.create_histogram(
            semconv.OPERATION_DURATION,
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=semconv.OPERATION_DURATION_BUCKETS,
        )

    @contextmanager
    def agent_span(
        self, agent: str, target: ModelTarget, parent: Context | None = None
    ) -> Iterator[trace.Span]:
        """A span around one whole agent run (a task, a request, a team invocation).

        An exception ends it with ``error.type`` (the failed call's status, else the
        exception's class) and no exception text.
        """
        attributes = target.attributes(semconv.INVOKE_AGENT)
        attributes[semconv.AGENT_NAME] = agent
        with self._tracer.start_as_current_span(
            f"{semconv.INVOKE_AGENT} {agent}",
            context=parent,
            kind=trace.SpanKind.INTERNAL,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                yield span
            except Exception as exc:
                failed = exc.failure.status if isinstance(exc, ModelCallError) else None
                span.set_attribute(semconv.ERROR_TYPE, failed or type(exc).__name__)
                span.set_status(trace.StatusCode.ERROR)
                raise

    @staticmethod
    def record_usage(span: trace.Span, stats: CallStats) -> None:
        """The tokens a whole run spent, on its span."""
        span.set_attribute(semconv.INPUT_TOKENS, stats.usage.input_tokens)
        span.set_attribute(semconv.OUTPUT_TOKENS, stats.usage.output_tokens)

    @contextmanager
    def chat_span(self, target: ModelTarget) -> Iterator[trace.Span]:
        """A client span around one chat call.

        Exceptions are not recorded by OpenTelemetry itself (a provider's error text may
        echo the key); :meth:`record_failure` records the scrubbed status instead.
        """
        with self._tracer.start_as_current_span(
            f"{semconv.CHAT} {target.model}",
            kind=trace.SpanKind.CLIENT,
            attributes=target.request_attributes(),
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            yield span

    def record_success(self, span: trace.Span, target: ModelTarget, response: ChatResponse) -> None:
        self.record_usage(span, response.stats)
        if response.model:
            span.set_attribute(semconv.RESPONSE_MODEL, response.model)
        if response.finish_reason:
            span.set_attribute(semconv.RESPONSE_FINISH_REASONS, [response.finish_reason])
        attributes = target.attributes(semconv.CHAT)
        self._duration.record(response.stats.latency_seconds, attributes)
        usage = response.stats.usage
        for token_type, count in (("input", usage.input_tokens), ("output", usage.output_tokens)):
            self._token_usage.record(count, {**attributes, semconv.TOKEN_TYPE: token_type})

    def record_failure(
        self, span: trace.Span, target: ModelTarget, failure: CallFailure, seconds: float
    ) -> None:
        span.set_attribute(semconv.ERROR_TYPE, failure.status)
        span.set_status(trace.StatusCode.ERROR, one_line(failure.detail))
        attributes = target.attributes(semconv.CHAT)
        self._duration.record(seconds, {**attributes, semconv.ERROR_TYPE: failure.status})
