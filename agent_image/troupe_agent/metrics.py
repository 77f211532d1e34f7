"""Prometheus metrics of an agent pod (serve mode), in their own registry.

Label sets are bounded: routes are the app's fixed paths (anything else is
``other``), models are the Agent's one model, statuses are HTTP codes or a few
words (``timeout``, ``connection``). No prompt, output or key ever becomes a
label. Units are base units (seconds); counters end in ``_total``. The model's
series (calls, tokens, 429s) are created at 0 as soon as the model is known
(:meth:`ServeMetrics.model_known`), so that ``rate()`` sees their first call.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from troupe_agent.usage import CallStats

REQUEST_DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class ServeMetrics:
    """The agent pod's request and model-call metrics; also a model call observer."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._requests = Counter(
            "troupe_agent_requests",
            "HTTP requests served, by route and status code.",
            ["route", "code"],
            registry=self.registry,
        )
        self._request_duration = Histogram(
            "troupe_agent_request_duration_seconds",
            "Time to serve an HTTP request, by route.",
            ["route"],
            buckets=REQUEST_DURATION_BUCKETS,
            registry=self.registry,
        )
        self._tokens = Counter(
            "troupe_llm_tokens",
            "LLM tokens reported by the provider, by model and direction (input or output).",
            ["model", "direction"],
            registry=self.registry,
        )
        self._calls = Counter(
            "troupe_llm_calls",
            "LLM calls (each attempt, failed ones included), by model.",
            ["model"],
            registry=self.registry,
        )
        self._errors = Counter(
            "troupe_llm_errors",
            "Failed LLM calls (each attempt), by model and status (HTTP code or timeout).",
            ["model", "status"],
            registry=self.registry,
        )

    def model_known(self, model: str) -> None:
        """Create the series of ``model`` at 0, before its first call."""
        self._calls.labels(model=model)
        self._errors.labels(model=model, status="429")
        for direction in ("input", "output"):
            self._tokens.labels(model=model, direction=direction)

    def observe_request(self, route: str, code: int, seconds: float) -> None:
        self._requests.labels(route=route, code=str(code)).inc()
        self._request_duration.labels(route=route).observe(seconds)

    def call_succeeded(self, model: str, stats: CallStats) -> None:
        self._calls.labels(model=model).inc()
        self._tokens.labels(model=model, direction="input").inc(stats.usage.input_tokens)
        self._tokens.labels(model=model, direction="output").inc(stats.usage.output_tokens)

    def call_failed(self, model: str, status: str) -> None:
        self._calls.labels(model=model).inc()
        self._errors.labels(model=model, status=status).inc()

    def exposition(self) -> bytes:
        """The metrics in the Prometheus text format."""
        return generate_latest(self.registry)
