"""Serve mode: an Agent as a small HTTP service (invoke, health, readiness, metrics).

The process answers ``/healthz`` at once and builds the agent graph in a
background thread; ``/readyz`` turns 200 once the graph is built.
``POST /v1/invoke`` runs the graph in a worker thread, for callers whose
ServiceAccount token the API server vouches for and whom RBAC allows
(``troupe_agent.invoke_auth``); health, readiness and metrics stay open.
Serving without authentication takes ``--insecure-no-auth``, and serve mode
refuses to start with authentication on but no Kubernetes API to check callers
with. uvicorn handles SIGTERM: it stops accepting connections and lets
in-flight requests finish. An invocation's spans join the caller's trace
(its ``traceparent`` header), also when handed on to the supervisor.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import anyio
import httpx
from kubernetes.client import ApiClient
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from troupe_agent.access_reviews import ApiReviews, InvokeTarget, pod_namespace
from troupe_agent.call_window import CallWindow
from troupe_agent.conversations import MAX_PROMPT, ConversationConflict, ConversationStore
from troupe_agent.errors import CallFailure, ModelCallError
from troupe_agent.invoke_auth import InvokeAuth
from troupe_agent.kube_api import SERVE_USER_AGENT, KubeApiError, connect
from troupe_agent.metrics import ServeMetrics
from troupe_agent.scrub import one_line, register_secret
from troupe_agent.supervision import Supervision, SupervisionSettings
from troupe_agent.team import Team, TeamError
from troupe_agent.telemetry import PROPAGATOR, parent_context_from_headers
from troupe_operator.api import AgentSpec
from troupe_operator.api.serve_env import AGENT_UID_ENV, MEMBERS_ENV, NAME_ENV, SPEC_ENV

if TYPE_CHECKING:
    from troupe_agent.agent import Agent

log = logging.getLogger(__name__)

DEFAULT_AGENT_NAME: Final = "agent"
PROMETHEUS_CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

FORWARDED_BY: Final = "X-Troupe-Forwarded-By"
"""Set on a team invocation one pod hands to the supervisor, so it is never handed on again."""
FORWARDED_HEADERS: Final = frozenset({"retry-after", "www-authenticate"})
FORWARD_SECONDS: Final = 3700.0
"""Longest wait for the supervisor's answer: above the largest invokeTimeoutSeconds (3600)."""
RETRY_SOON: Final = {"Retry-After": "1"}
CONVERSATION_ID: Final = re.compile(r"^[A-Za-z0-9._-]{1,253}$")

AgentBuilder = Callable[[ServeMetrics], "Agent"]
"""Builds the Agent, given the metrics it must report its model calls to."""
TeamBuilder = Callable[["Agent"], Team]
"""Builds the team loop of a supervisor Agent with members, on its built Agent."""


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
    elif SPEC_ENV in os.environ:
        source, text = SPEC_ENV, os.environ[SPEC_ENV]
    else:
        raise ServeConfigError(f"no agent spec: pass --agent PATH or set {SPEC_ENV}")
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
    """The agent (and its team, for a supervisor with members) once built, or why not."""

    def __init__(self) -> None:
        self.agent: Agent | None = None
        self.team: Team | None = None
        self.failure: str | None = None


def parse_team_body(body: Any) -> tuple[str, str]:
    """The prompt and conversation id of a team invocation (a new id when none is given)."""
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    unknown = set(body) - {"prompt", "conversationId"}
    if unknown:
        raise BadRequest(f"unknown fields: {', '.join(sorted(unknown))}")
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise BadRequest('"prompt" must be a non-empty string')
    if len(prompt) > MAX_PROMPT:
        raise BadRequest(
            f'"prompt" is longer than {MAX_PROMPT} characters (the Conversation limit)'
        )
    conversation_id = body.get("conversationId", str(uuid.uuid4()))
    if not isinstance(conversation_id, str) or not CONVERSATION_ID.match(conversation_id):
        raise BadRequest('"conversationId" must be 1 to 253 letters, digits, ".", "_" or "-"')
    return prompt, conversation_id


def connect_invoke_auth(
    name: str, audience: str, api_client: ApiClient | None = None
) -> InvokeAuth:
    """The gate of agent ``name``, reviewing callers with the pod's ServiceAccount (else the
    kubeconfig's identity) for the Agent in the pod's namespace."""
    without = "pass --insecure-no-auth to serve without it (local development only)"
    if api_client is None:
        api_client = connect_api("serve mode checks every caller's token with", without)
    namespace = pod_namespace()
    if namespace is None:
        raise ServeConfigError(
            "serve mode checks callers' permission on the Agent in the pod's namespace, which"
            f" is unknown (no POD_NAMESPACE, no service account namespace file); {without}"
        )
    return InvokeAuth(ApiReviews(api_client, InvokeTarget(namespace, name), audience))


def create_app(
    build_agent: AgentBuilder,
    metrics: ServeMetrics | None = None,
    *,
    auth: InvokeAuth | None,
    supervision: Supervision | None = None,
    build_team: TeamBuilder | None = None,
) -> Starlette:
    """The ASGI app; the agent is built in the background when the app starts.

    ``auth=None`` serves ``/v1/invoke`` to anyone who can reach it. With
    ``supervision`` the pod campaigns for its Agent's Lease while it serves;
    with ``build_team`` invocations run the team loop, on the elected pod only."""
    metrics = metrics or ServeMetrics()
    slot = _AgentSlot()

    def build() -> None:
        try:
            slot.agent = build_agent(metrics)
            slot.team = build_team(slot.agent) if build_team is not None else None
        except Exception as exc:
            slot.agent = None
            slot.failure = one_line(f"cannot build the agent: {type(exc).__name__}: {exc}")
            log.error("%s", slot.failure)
            return
        metrics.model_known(slot.agent.client.model_name)
        log.info("agent %s ready: model %s", slot.agent.name, slot.agent.client.model_name)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        campaign = asyncio.create_task(supervision.run()) if supervision is not None else None
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(anyio.to_thread.run_sync, build)
                yield
        finally:
            if campaign is not None:  # a plain task: the elector releases the Lease as it ends
                campaign.cancel()
                await asyncio.gather(campaign, return_exceptions=True)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        if slot.agent is None:
            return JSONResponse({"status": "not ready", "reason": slot.failure}, 503)
        return JSONResponse({"status": "ready"})

    async def metrics_endpoint(request: Request) -> Response:
        return Response(metrics.exposition(), media_type=PROMETHEUS_CONTENT_TYPE)

    async def supervisor(request: Request) -> Response:
        if supervision is None:
            return _error(404, "this agent elects no supervisor (it runs outside an Agent's pods)")
        return JSONResponse(supervision.view())

    async def invoke_team(request: Request, team: Team, authorization: str) -> Response:
        raw = await request.body()
        try:
            prompt, conversation_id = parse_team_body(json.loads(raw))
        except (ValueError, BadRequest) as exc:
            return _error(400, f"bad request: {exc}")
        if supervision is not None and not supervision.elector.is_leader:
            return await forward_to_supervisor(request, raw, supervision)
        try:
            reply = await anyio.to_thread.run_sync(
                team.invoke,
                prompt,
                conversation_id,
                authorization,
                parent_context_from_headers(request.headers),
            )
        except TeamError as error:
            body = {
                "error": one_line(str(error)),
                "reason": error.reason,
                "conversationId": conversation_id,
                "turns": [turn.to_wire() for turn in error.done.turns],
                "usage": error.done.usage.to_wire(),
            }
            return JSONResponse(body, error.status)
        except ModelCallError as exc:
            return _error(http_status_for(exc.failure), str(exc))
        except ConversationConflict as exc:
            return _error(409, str(exc))
        except KubeApiError as exc:
            return _error(503, f"cannot checkpoint the conversation: {exc}", RETRY_SOON)
        return JSONResponse(reply.to_wire(team.client.model_name, team.client.scripted))

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
        if slot.team is not None:
            return await invoke_team(request, slot.team, request.headers.get("authorization", ""))
        try:
            prompt, context = parse_invoke_body(json.loads(await request.body()))
        except (ValueError, BadRequest) as exc:
            return _error(400, f"bad request: {exc}")
        try:
            run = functools.partial(
                agent.run, trace_parent=parent_context_from_headers(request.headers)
            )
            text, result = await anyio.to_thread.run_sync(run, prompt, context)
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
        Route("/v1/supervisor", supervisor, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.add_middleware(
        RequestMetricsMiddleware, metrics=metrics, routes=frozenset(r.path for r in routes)
    )
    return app


async def forward_to_supervisor(request: Request, raw: bytes, supervision: Supervision) -> Response:
    """Hand a team invocation to the elected pod, which alone runs team loops."""
    holder = supervision.elector.holder
    if request.headers.get(FORWARDED_BY):
        return _error(
            503, f"this pod is not the supervisor (now: {holder or 'nobody'})", RETRY_SOON
        )
    address = supervision.holder_address()
    if address is None:
        return _error(503, "the agent has no elected supervisor yet", RETRY_SOON)
    headers = {"Content-Type": "application/json", FORWARDED_BY: supervision.settings.identity}
    if authorization := request.headers.get("authorization"):
        headers["Authorization"] = authorization
    headers.update({k: v for k, v in request.headers.items() if k in PROPAGATOR.fields})
    try:
        async with httpx.AsyncClient() as http:
            answer = await http.post(
                f"{address}/v1/invoke", content=raw, headers=headers, timeout=FORWARD_SECONDS
            )
    except httpx.TransportError as error:
        return _error(
            503, f"cannot reach the supervisor {holder}: {type(error).__name__}", RETRY_SOON
        )
    kept = {k: v for k, v in answer.headers.items() if k.lower() in FORWARDED_HEADERS}
    return Response(answer.content, answer.status_code, kept, media_type="application/json")


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


def connect_api(needs: str, otherwise: str) -> ApiClient:
    """The pod's API client; ServeConfigError saying who ``needs`` it when there is none."""
    try:
        return connect(SERVE_USER_AGENT)
    except KubeApiError as error:
        raise ServeConfigError(f"{needs} the Kubernetes API: {error}; {otherwise}") from error


def member_addresses(spec: AgentSpec, environ: Mapping[str, str]) -> dict[str, str]:
    """Where each member is served, from ``TROUPE_MEMBERS`` (set by the operator)."""
    try:
        addresses = json.loads(environ.get(MEMBERS_ENV) or "{}")
    except ValueError as error:
        raise ServeConfigError(f"{MEMBERS_ENV} is not JSON: {error}") from error
    if not isinstance(addresses, dict):
        raise ServeConfigError(f"{MEMBERS_ENV} must be a JSON object of member: URL")
    missing = [member for member in spec.members if member not in addresses]
    if missing:
        raise ServeConfigError(f"{MEMBERS_ENV} has no address for member(s) {', '.join(missing)}")
    return {member: str(addresses[member]) for member in spec.members}


def run_serve_mode(options: ServeOptions) -> None:
    """Serve until SIGTERM; raises :class:`ServeConfigError` when misconfigured."""
    import uvicorn

    from troupe_agent.agent import Agent, AgentOptions
    from troupe_agent.team import MemberClient

    spec = load_agent_spec(options.agent_file)
    name = options.name or os.environ.get(NAME_ENV) or DEFAULT_AGENT_NAME
    api_key = os.environ.get(options.api_key_env) or None
    if spec.model.api_key_secret_ref is not None and api_key is None:
        raise ServeConfigError(
            f"agent {name}: the API key variable {options.api_key_env} is not set"
        )
    register_secret(api_key)
    try:
        settings = SupervisionSettings.from_env(name, options.port)
    except ValueError as error:
        raise ServeConfigError(f"agent {name}: {error}") from error
    without = "pass --insecure-no-auth and leave TROUPE_SUPERVISOR_LEASE unset to serve alone"
    needs_api = not options.insecure_no_auth or settings is not None
    api_client = (
        connect_api("serve mode checks callers and elects its supervisor with", without)
        if needs_api
        else None
    )
    metrics, calls = ServeMetrics(), CallWindow()

    def build_agent(metrics: ServeMetrics) -> Agent:
        return Agent(name, spec, api_key, AgentOptions(observers=[metrics, calls]))

    if options.insecure_no_auth:
        auth = None
        log.warning(
            "AUTHENTICATION IS OFF (--insecure-no-auth): anyone who can reach port %d may invoke"
            " agent %s and spend its model budget; for local development only",
            options.port,
            name,
        )
    else:
        auth = connect_invoke_auth(name, options.token_audience, api_client)
    store = None
    if api_client is not None and settings is not None and spec.members:
        store = ConversationStore(
            api_client, settings.namespace, name, os.environ.get(AGENT_UID_ENV) or None
        )
    supervision = None
    if api_client is not None and settings is not None:
        supervision = Supervision(
            settings, api_client, (spec, api_key), calls, metrics.registry, store
        )
    build_team = None
    if spec.members:
        members = MemberClient(member_addresses(spec, os.environ))

        def build_team(agent: Agent) -> Team:
            return Team(spec, agent.client, members, store)

    app = create_app(
        build_agent, metrics, auth=auth, supervision=supervision, build_team=build_team
    )
    server = uvicorn.Server(
        uvicorn.Config(app, host=options.host, port=options.port, log_config=None, access_log=False)
    )
    server.run()
