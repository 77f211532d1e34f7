"""An OpenAI-compatible chat server on loopback with scripted replies and injected faults.

Serves `POST /v1/chat/completions` (plain JSON, or SSE with `stream: true`, ending with a
usage chunk when `stream_options.include_usage` is set) and `GET /v1/models`.

- Replies are deterministic: `"stub reply to: <first 200 chars of the last user message>"`,
  unless a test scripts them with `stub.script("text", lambda body: "text", ...)`, consumed
  one per request in order (then back to the default).
- A reply (scripted, or from the default function given to the constructor) may instead be
  a `ToolCall(name, arguments)` or a list of them: the assistant message then has `content:
  null`, `tool_calls` with ids `call_stub_<n>` and finish_reason `tool_calls`; streamed, each
  call comes as OpenAI sends it (index, id, type and name, then its arguments in chunks), so
  a client's `bind_tools(..., tool_choice=...)` gets its structured decision.
- `usage` counts whitespace-separated words: prompt = all message contents, completion =
  the reply's text, or the JSON arguments of its tool calls.
- Faults are queued with `stub.inject(Fault.rate_limited(retry_after=1), Fault.server_error())`
  and consumed by the next requests, one each: 429 with `Retry-After`, 500, 401, 400
  `context_length_exceeded`, slow replies (`Fault.slow(seconds)`), malformed bodies.
  `stub.fail_model("name", Fault.unavailable())` answers every request for that model with
  the fault instead (an endpoint that stays down, while other models answer).
- `stub.limit_concurrency(most, hold=...)` plays a per-key rate limit: a chat request that
  arrives while `most` are being answered gets a 429 (counted in `stub.throttled`), and
  each answered one takes `hold` seconds, so that requests overlap.
- Every request is recorded in `stub.requests` (path, headers including `Authorization`,
  JSON body), so tests can assert what a client sent and search for leaked secrets.
- `python -m tests.support.openai_stub [PORT]` serves it on all interfaces until killed,
  answering with `team_reply` (the kind e2e test runs it as a Pod in the cluster).
"""

from __future__ import annotations

import asyncio
import collections
import json
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp.web

from tests.support.loopback import BackgroundService

ChatBody = dict[str, Any]
MODEL_ID = "stub-model"


@dataclass(frozen=True)
class ToolCall:
    """A function call the assistant answers with instead of text."""

    name: str
    arguments: dict[str, Any]


Answer = str | ToolCall | list[ToolCall]
Reply = Answer | Callable[[ChatBody], Answer]


@dataclass(frozen=True)
class RecordedRequest:
    path: str
    headers: dict[str, str]
    body: ChatBody | None


@dataclass(frozen=True)
class Fault:
    """What the next request gets instead of (or before) a normal reply."""

    status: int = 200
    error: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    raw_body: bytes | None = None
    until: threading.Event | None = None
    """Hold the reply until this is set (a test says when the call may end)."""

    @classmethod
    def rate_limited(cls, retry_after: float = 1) -> Fault:
        error = {
            "message": "Rate limit reached (stub)",
            "type": "requests",
            "code": "rate_limit_exceeded",
        }
        return cls(429, error, {"Retry-After": f"{retry_after:g}"})

    @classmethod
    def server_error(cls) -> Fault:
        return cls(
            500, {"message": "The server had an error (stub)", "type": "server_error", "code": None}
        )

    @classmethod
    def unavailable(cls) -> Fault:
        return cls(503, {"message": "The service is unavailable (stub)", "type": "server_error"})

    @classmethod
    def unauthorized(cls) -> Fault:
        error = {
            "message": "Incorrect API key provided (stub)",
            "type": "invalid_request_error",
            "code": "invalid_api_key",
        }
        return cls(401, error)

    @classmethod
    def context_length_exceeded(cls) -> Fault:
        error = {
            "message": "This model's maximum context length is 8192 tokens (stub)",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        }
        return cls(400, error)

    @classmethod
    def slow(cls, seconds: float) -> Fault:
        """A normal reply, after `seconds`."""
        return cls(delay=seconds)

    @classmethod
    def held(cls, until: threading.Event) -> Fault:
        """A normal reply, once the test sets `until`."""
        return cls(until=until)

    @classmethod
    def malformed(cls) -> Fault:
        return cls(raw_body=b'{"id": "chatcmpl-broken", "choices": [')


def _words(text: str) -> int:
    return len(text.split())


def _text_of(content: Any) -> str:
    """Message content as text: a string, or the text parts of a content list."""
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content or "")


def _pieces(text: str) -> list[str]:
    """`text` in word-sized chunks that join back into it, as a streamed reply comes."""
    pieces = [word + " " for word in text.split(" ")]
    pieces[-1] = pieces[-1].rstrip(" ")
    return pieces


def _deltas(message: dict[str, Any]) -> list[dict[str, Any]]:
    """The streamed deltas of an assistant message, in the order OpenAI sends them."""
    if message["content"] is not None:
        return [{"role": "assistant", "content": ""}] + [
            {"content": piece} for piece in _pieces(message["content"])
        ]
    deltas: list[dict[str, Any]] = []
    for index, call in enumerate(message["tool_calls"]):
        function = call["function"]
        header = {**call, "index": index, "function": {"name": function["name"], "arguments": ""}}
        deltas.append({"tool_calls": [header]})
        deltas += [
            {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}
            for piece in _pieces(function["arguments"])
        ]
    deltas[0] = {"role": "assistant", "content": None, **deltas[0]}
    return deltas


def default_reply(body: ChatBody) -> str:
    user_messages = [m for m in body.get("messages", []) if m.get("role") == "user"]
    last = _text_of(user_messages[-1].get("content")) if user_messages else ""
    return f"stub reply to: {last[:200]}"


def team_reply(body: ChatBody) -> Answer:
    """`default_reply` for a task; a supervisor's decision (the `delegate` tool offered)
    delegates once, to its first member, then finishes."""
    tools = {tool["function"]["name"]: tool["function"] for tool in body.get("tools") or []}
    if "delegate" not in tools:
        return default_reply(body)
    member = tools["delegate"].get("parameters", {}).get("properties", {}).get("member", {})
    turns = _text_of(body["messages"][-1].get("content"))
    if "(none yet)" in turns and member.get("enum"):
        return ToolCall("delegate", {"member": member["enum"][0], "instruction": "Notes, please."})
    return ToolCall("finish", {"answer": f"stub answer after: {turns[-200:]}"})


class OpenAIStub(BackgroundService):
    def __init__(
        self,
        reply: Callable[[ChatBody], Answer] = default_reply,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
    ) -> None:
        super().__init__("openai-stub")
        self.api_key = api_key
        """When set, a chat request without ``Authorization: Bearer <api_key>`` gets a 401,
        as a provider refuses a wrong key (tests change it to play a fixed Secret)."""
        self._address = host, port
        self.requests: list[RecordedRequest] = []
        self.billed: list[int] = []
        """``total_tokens`` of every reply served, in order: what a client was charged."""
        self._default_reply = reply
        self._scripted: collections.deque[Reply] = collections.deque()
        self._faults: collections.deque[Fault] = collections.deque()
        self._model_faults: dict[str, Fault] = {}
        self._served = 0
        self._tool_calls = 0
        self._most: int | None = None
        self._hold = 0.0
        self._retry_after = 0.5
        self._in_flight = 0
        self.throttled = 0
        """Requests answered 429 because ``limit_concurrency``'s bound was reached."""
        self.most_in_flight = 0
        self.url = ""

    @property
    def base_url(self) -> str:
        """What an OpenAI client takes as `base_url` (ends in `/v1`)."""
        return f"{self.url}/v1"

    def script(self, *replies: Reply) -> None:
        self._scripted.extend(replies)

    def inject(self, *faults: Fault) -> None:
        self._faults.extend(faults)

    def limit_concurrency(self, most: int, hold: float = 1.0, retry_after: float = 0.5) -> None:
        """Answer 429 (with ``Retry-After: retry_after``) to a chat request while ``most`` are
        in flight; each served one takes ``hold`` seconds."""
        self._most, self._hold, self._retry_after = most, hold, retry_after

    def fail_model(self, model: str, fault: Fault) -> None:
        """Answer every request for ``model`` with ``fault``, before any queued one."""
        self._model_faults[model] = fault

    def _fault_for(self, request: aiohttp.web.Request, body: ChatBody) -> Fault:
        """A wrong key first (as a provider checks it first), then the model's, then queued."""
        if self.api_key is not None and request.headers.get("Authorization") != (
            f"Bearer {self.api_key}"
        ):
            return Fault.unauthorized()
        model_fault = self._model_faults.get(str(body.get("model")))
        if model_fault is not None:
            return model_fault
        return self._faults.popleft() if self._faults else Fault()

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == "/v1/chat/completions"]

    async def _start(self) -> None:
        app = aiohttp.web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        self._runner = aiohttp.web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        site = aiohttp.web.TCPSite(self._runner, *self._address)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def _stop(self) -> None:
        await self._runner.cleanup()

    async def _models(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        self.requests.append(RecordedRequest(request.path, dict(request.headers), None))
        model = {"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "troupe-stub"}
        return aiohttp.web.json_response({"object": "list", "data": [model]})

    async def _chat(self, request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        body: ChatBody = await request.json()
        self.requests.append(RecordedRequest(request.path, dict(request.headers), body))
        if self._most is None:
            return await self._answer(request, body)
        if self._in_flight >= self._most:
            self.throttled += 1
            fault = Fault.rate_limited(retry_after=self._retry_after)
            error = {"param": None, **(fault.error or {})}
            return aiohttp.web.json_response(
                {"error": error}, status=fault.status, headers=fault.headers
            )
        self._in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self._in_flight)
        try:
            await asyncio.sleep(self._hold)
            return await self._answer(request, body)
        finally:
            self._in_flight -= 1

    async def _answer(
        self, request: aiohttp.web.Request, body: ChatBody
    ) -> aiohttp.web.StreamResponse:
        fault = self._fault_for(request, body)
        await asyncio.sleep(fault.delay)
        while fault.until is not None and not fault.until.is_set():
            await asyncio.sleep(0.05)
        if fault.raw_body is not None:
            return aiohttp.web.Response(body=fault.raw_body, content_type="application/json")
        if fault.error is not None:
            error = {"param": None, **fault.error}
            return aiohttp.web.json_response(
                {"error": error}, status=fault.status, headers=fault.headers
            )
        scripted = self._scripted.popleft() if self._scripted else self._default_reply
        message, finish_reason = self._message(scripted(body) if callable(scripted) else scripted)
        self._served += 1
        completion_id = f"chatcmpl-stub-{self._served}"
        prompt_tokens = sum(_words(_text_of(m.get("content"))) for m in body.get("messages", []))
        completion_tokens = _words(
            message["content"]
            or " ".join(call["function"]["arguments"] for call in message.get("tool_calls", ()))
        )
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        self.billed.append(usage["total_tokens"])
        envelope = {
            "id": completion_id,
            "created": int(time.time()),
            "model": body.get("model", MODEL_ID),
        }
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return await self._stream(
                request, envelope, message, finish_reason, usage if include_usage else None
            )
        choice = {
            "index": 0,
            "message": message,
            "finish_reason": finish_reason,
            "logprobs": None,
        }
        return aiohttp.web.json_response(
            {
                **envelope,
                "object": "chat.completion",
                "choices": [choice],
                "usage": usage,
                "system_fingerprint": "stub",
            }
        )

    def _message(self, answer: Answer) -> tuple[dict[str, Any], str]:
        """The assistant message of a reply, and its finish_reason."""
        if isinstance(answer, str):
            return {"role": "assistant", "content": answer}, "stop"
        tool_calls = []
        for call in [answer] if isinstance(answer, ToolCall) else answer:
            self._tool_calls += 1
            function = {"name": call.name, "arguments": json.dumps(call.arguments)}
            tool_calls.append(
                {"id": f"call_stub_{self._tool_calls}", "type": "function", "function": function}
            )
        return {"role": "assistant", "content": None, "tool_calls": tool_calls}, "tool_calls"

    @staticmethod
    async def _stream(
        request: aiohttp.web.Request,
        envelope: dict[str, Any],
        message: dict[str, Any],
        finish_reason: str,
        usage: dict[str, int] | None,
    ) -> aiohttp.web.StreamResponse:
        response = aiohttp.web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        steps: list[tuple[dict[str, Any], str | None]] = [(d, None) for d in _deltas(message)]
        steps.append(({}, finish_reason))
        extra = {"usage": None} if usage is not None else {}
        for delta, finish in steps:
            choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
            chunk = {**envelope, "object": "chat.completion.chunk", "choices": [choice], **extra}
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        if usage is not None:
            chunk = {**envelope, "object": "chat.completion.chunk", "choices": [], "usage": usage}
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


def main() -> None:
    """Serve on all interfaces, on the port given (default 8000), until the process ends."""
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    with OpenAIStub(team_reply, host="0.0.0.0", port=port) as stub:
        print(f"OpenAI stub serving on {stub.url}", flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
