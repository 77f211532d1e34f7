"""Serve mode: an Agent as a small HTTP service (invoke, health, readiness, metrics).

The process answers ``/healthz`` at once and builds the agent graph in a
background thread; ``/readyz`` turns 200 once the graph is built.
``POST /v1/invoke`` runs the graph in a worker thread, for callers whose
ServiceAccount token the API server vouches for and whom RBAC allows
(``troupe_agent.invoke_auth``); health, readiness and metrics stay open.
Serving without authentication takes ``--insecure-no-auth``, and serve mode
refuses to start with authentication on but no Kubernetes API to check callers
with. uvicorn handles SIGTERM: it stops accepting connections and lets
in-flight requests finish.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import anyio
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from troupe_agent.access_reviews import ApiReviews, InvokeTarget, pod_namespace
from troupe_agent.errors import CallFailure, ModelCallError
from troupe_agent.invoke_auth import InvokeAuth
from troupe_agent.kube_api import SERVE_USER_AGENT, KubeApiError, connect
from troupe_agent.metrics import ServeMetrics
from troupe_agent.scrub import one_line, register_secret
from troupe_operator.api import AgentSpec

if TYPE_CHECKING:
    from troupe_agent.agent import Agent

log = logging.getLogger(__name__)

AGENT_SPEC_ENV: Final = "TROUPE_AGENT_SPEC"
AGENT_NAME_ENV: Final = "TROUPE_AGENT_NAME"
DEFAULT_AGENT_NAME: Final = "agent"
PROMETHEUS_CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

AgentBuilder = Callable[[ServeMetrics], "Agent"]
"""Builds the Agent, given the metrics it must report its model calls to."""


@dataclass(frozen=True)
class ServeOptions:
    agent_file: Path | None
    name: str | None
    api_key_env: str
    host: str
    port: int
    token_audience: str
    insecure_no_auth: bool


class ServeConfigError(Exception):
    """The agent to serve is not configured properly; the message is one line."""


class BadRequest(Exception):
    """An invoke body the agent cannot run."""


def load_agent_spec(agent_file: Path | None) -> AgentSpec:
    """The AgentSpec from ``--agent`` or, without it, from ``TROUPE_AGENT_SPEC``."""
    if agent_file is not None:
        try:
            source, text = str(agent_file), agent_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ServeConfigError(f"cannot read agent spec {agent_file}: {exc.strerror}") from exc
    elif AGENT_SPEC_ENV in os.environ:
        source, text = AGENT_SPEC_ENV, os.environ[AGENT_SPEC_ENV]
    else:
        raise ServeConfigError(f"no agent spec: pass --agent PATH or set {AGENT_SPEC_ENV}")
    try:
        return AgentSpec.model_validate_json(text)
    except ValidationError as exc:
        raise ServeConfigError(f"agent spec from {source} is invalid: {exc}") from exc


def parse_invoke_body(body: Any) -> tuple[str, dict[str, str]]:
    """The prompt and context of an invoke request; context values that are not text
    are passed to the model as JSON."""
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise BadRequest('"prompt" must be a non-empty string')
    context = body.get("context", {})
    if not isinstance(context, dict):
        raise BadRequest('"context" must be an object')
    unknown = set(body) - {"prompt", "context"}
    if unknown:
        raise BadRequest(f"unknown fields: {', '.join(sorted(unknown))}")
    return prompt, {
        str(name): value if isinstance(value, str) else json.dumps(value)
        for name, value in context.items()
    }


def http_status_for(failure: CallFailure) -> int:
    """504 when the model timed out, 503 when it was unavailable, 502 when it refused."""
    if failure.status in ("timeout", "deadline"):
        return 504
    return 503 if failure.retryable else 502


class _AgentSlot:
    """The agent once it is built, or why it could not be."""

    def __init__(self) -> None:
        self.agent: Agent | None = None
        self.failure: str | None = None


def connect_invoke_auth(name: str, audience: str) -> InvokeAuth:
    """The gate of agent ``name``, reviewing callers with the pod's ServiceAccount (else the
    kubeconfig's identity) for the Agent in the pod's namespace."""
    without = "pass --insecure-no-auth to serve without it (local development only)"
    try:
        api_client = connect(SERVE_USER_AGENT)
    except KubeApiError as error:
        raise ServeConfigError(
            f"serve mode checks every caller's token with the Kubernetes API: {error}; {without}"
        ) from error
    namespace = pod_namespace()
    if namespace is None:
        raise ServeConfigError(
            "serve mode checks callers' permission on the Agent in the pod's namespace, which"
            f" is unknown (no POD_NAMESPACE, no service account namespace file); {without}"
        )
    return InvokeAuth(ApiReviews(api_client, InvokeTarget(namespace, name), audience))


def create_app(
    build_agent: AgentBuilder, metrics: ServeMetrics | None = None, *, auth: InvokeAuth | None
) -> Starlette:
    """The ASGI app; the agent is built in the background when the app starts.

    ``auth=None`` serves ``/v1/invoke`` to anyone who can reach it."""
    metrics = metrics or ServeMetrics()
    slot = _AgentSlot()

    def build() -> None:
        try:
            slot.agent = build_agent(metrics)
        except Exception as exc:
            slot.failure = one_line(f"cannot build the agent: {type(exc).__name__}: {exc}")
            log.error("%s", slot.failure)
            return
        log.info("agent %s ready: model %s", slot.agent.name, slot.agent.client.model_name)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(anyio.to_thread.run_sync, build)
            yield

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        if slot.agent is None:
            return JSONResponse({"status": "not ready", "reason": slot.failure}, 503)
        return JSONResponse({"status": "ready"})

    async def metrics_endpoint(request: Request) -> Response:
        return Response(metrics.exposition(), media_type=PROMETHEUS_CONTENT_TYPE)

    async def invoke(request: Request) -> Response:
        if auth is not None:
            verdict = await anyio.to_thread.run_sync(
                auth.check, request.headers.get("authorization")
            )
            if not verdict.allowed:
                log.log(
                    logging.WARNING if verdict.status >= 500 else logging.INFO,
                    "invoke refused (%d): %s",
                    verdict.status,
                    verdict.message,
                )
                return _error(verdict.status, verdict.message, verdict.headers)
            log.info("invoke by %s", verdict.user)
        agent = slot.agent
        if agent is None:
            return _error(503, slot.failure or "the agent is still starting")
        try:
            prompt, context = parse_invoke_body(json.loads(await request.body()))
        except (ValueError, BadRequest) as exc:
            return _error(400, f"bad request: {exc}")
        try:
            text, result = await anyio.to_thread.run_sync(agent.run, prompt, context)
        except ModelCallError as exc:
            return _error(http_status_for(exc.failure), str(exc))
        return JSONResponse(
            {
                "output": text,
                "model": result.model,
                "scripted": result.scripted,
                "usage": result.usage.to_wire(),
            }
        )

    routes = [
        Route("/v1/invoke", invoke, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.add_middleware(
        RequestMetricsMiddleware, metrics=metrics, routes=frozenset(r.path for r in routes)
    )
    return app


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"error": one_line(message)}, status, headers)


class RequestMetricsMiddleware:
    """Counts and times every HTTP request by route (a fixed path, or ``other``) and code."""

    def __init__(self, app: ASGIApp, metrics: ServeMetrics, routes: frozenset[str]) -> None:
        self._app = app
        self._metrics = metrics
        self._routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        route = scope["path"] if scope["path"] in self._routes else "other"
        code = 500
        started = time.perf_counter()

        async def send_and_note_code(message: Message) -> None:
            nonlocal code
            if message["type"] == "http.response.start":
                code = message["status"]
            await send(message)

        try:
            await self._app(scope, receive, send_and_note_code)
        finally:
            self._metrics.observe_request(route, code, time.perf_counter() - started)


def run_serve_mode(options: ServeOptions) -> None:
    """Serve until SIGTERM; raises :class:`ServeConfigError` when misconfigured."""
    import uvicorn

    from troupe_agent.agent import Agent, AgentOptions

    spec = load_agent_spec(options.agent_file)
    name = options.name or os.environ.get(AGENT_NAME_ENV) or DEFAULT_AGENT_NAME
    api_key = os.environ.get(options.api_key_env) or None
    if spec.model.api_key_secret_ref is not None and api_key is None:
        raise ServeConfigError(
            f"agent {name}: the API key variable {options.api_key_env} is not set"
        )
    register_secret(api_key)

    def build_agent(metrics: ServeMetrics) -> Agent:
        return Agent(name, spec, api_key, AgentOptions(observers=[metrics]))

    if options.insecure_no_auth:
        auth = None
        log.warning(
            "AUTHENTICATION IS OFF (--insecure-no-auth): anyone who can reach port %d may invoke"
            " agent %s and spend its model budget; for local development only",
            options.port,
            name,
        )
    else:
        auth = connect_invoke_auth(name, options.token_audience)
    app = create_app(build_agent, auth=auth)
    server = uvicorn.Server(
        uvicorn.Config(app, host=options.host, port=options.port, log_config=None, access_log=False)
    )
    server.run()
