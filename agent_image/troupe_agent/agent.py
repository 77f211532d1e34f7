"""A runnable Agent: its model client and graph, built once, run many times.

Task mode runs it once; serve mode builds it at start-up and runs it per
request. :func:`run_task` runs one workflow task whose prompt is already
rendered: a :class:`~troupe_operator.api.TaskInput`, a
:class:`~troupe_agent.prompts.TaskPrompt` and a key in, the text and its
:class:`~troupe_operator.api.TaskResult` out. A task with an ``outputSchema`` makes one
structured call instead of the graph (:mod:`troupe_agent.structured`): a critique and
revision of JSON would be a second structured call for the same fields. Reading inputs,
rendering and writing outputs are task mode's (``task.py``), not this module's.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from opentelemetry.context import Context

from troupe_agent.graph import build_agent_graph, initial_state
from troupe_agent.llm import ChatReply, ModelClient
from troupe_agent.prompts import TaskPrompt, task_message
from troupe_agent.retry import Deadline
from troupe_agent.structured import check_output, output_tool, reply_json
from troupe_agent.telemetry import GenAITelemetry, parent_context_from_env
from troupe_agent.usage import CallObserver, CallStats
from troupe_operator.api import AgentSpec, TaskInput, TaskResult


@dataclass(frozen=True)
class AgentOptions:
    """How an Agent reports and waits; the defaults suit production."""

    observers: Sequence[CallObserver] = ()
    """Told about every model call (serve mode's Prometheus metrics)."""
    telemetry: GenAITelemetry | None = None
    """Spans and GenAI metrics; ``None`` uses the global OpenTelemetry providers."""
    sleep: Callable[[float], None] = time.sleep
    """How retries wait; tests pass a recorder."""


class Agent:
    """One Agent spec made runnable."""

    def __init__(
        self,
        name: str,
        spec: AgentSpec,
        api_key: str | None,
        options: AgentOptions = AgentOptions(),
    ) -> None:
        self.name = name
        self.spec = spec
        self.client = ModelClient(
            name,
            spec,
            api_key,
            observers=options.observers,
            telemetry=options.telemetry or GenAITelemetry(),
            sleep=options.sleep,
        )
        self.graph = build_agent_graph(spec, self.client)

    def run(
        self,
        prompt: str,
        context: Mapping[str, str],
        deadline: Deadline | None = None,
        trace_parent: Context | None = None,
    ) -> tuple[str, TaskResult]:
        """The answer to ``prompt`` given the material in ``context``; raises ModelCallError.

        ``trace_parent`` is the trace context the run joins (a task's, a caller's)."""
        telemetry = self.client.telemetry
        with telemetry.agent_span(self.name, self.client.target, trace_parent) as span:
            state = self.graph.invoke(initial_state(prompt, context, deadline or Deadline(None)))
            stats = state["stats"]
            telemetry.record_usage(span, stats)
        text = state["answer"]
        return text, self.result(text, stats)

    def run_structured(
        self,
        prompt: str,
        context: Mapping[str, str],
        schema: dict[str, Any],
        deadline: Deadline,
        trace_parent: Context | None = None,
    ) -> tuple[Any, str, TaskResult]:
        """JSON matching ``schema`` (and its text); raises ModelCallError or TaskFailed."""
        messages = [
            SystemMessage(self.spec.effective_system_prompt),
            HumanMessage(task_message(prompt, context)),
        ]
        reply = self.call_tools(messages, [output_tool(schema)], deadline, trace_parent)
        value = reply_json(reply.text, reply.tool_calls)
        check_output(value, schema)
        text = json.dumps(value, ensure_ascii=False, indent=2)
        return value, text, self.result(text, reply.stats)

    def call_tools(
        self,
        messages: list[BaseMessage],
        tools: Sequence[dict[str, Any]],
        deadline: Deadline,
        trace_parent: Context | None = None,
        parallel: bool = False,
    ) -> ChatReply:
        """One model call that must call ``tools`` (one or, ``parallel``, more), in the
        Agent's span; raises ModelCallError."""
        telemetry = self.client.telemetry
        with telemetry.agent_span(self.name, self.client.target, trace_parent) as span:
            reply = self.client.chat(messages, deadline, tools=tools, parallel=parallel)
            telemetry.record_usage(span, reply.stats)
        return reply

    def result(self, text: str, stats: CallStats) -> TaskResult:
        """What producing ``text`` cost, as a task reports it."""
        return TaskResult(
            model=self.client.model_name,
            scripted=self.client.scripted,
            usage=stats.usage,
            calls=stats.calls,
            latency_seconds=stats.latency_seconds,
            bytes=len(text.encode()),
        )


def run_task(
    task_input: TaskInput,
    prompt: TaskPrompt,
    api_key: str | None,
    deadline: Deadline,
    options: AgentOptions = AgentOptions(),
) -> tuple[str, TaskResult]:
    """Run one workflow task's agent in-process: the output text and what it cost.

    The task's spans join the trace named in ``TRACEPARENT`` when it is set.
    """
    agent = Agent(task_input.agent_name, task_input.agent, api_key, options)
    return agent.run(prompt.text, prompt.material, deadline, trace_parent=parent_context_from_env())


def run_structured_task(
    task_input: TaskInput,
    prompt: TaskPrompt,
    schema: dict[str, Any],
    api_key: str | None,
    deadline: Deadline,
    options: AgentOptions = AgentOptions(),
) -> tuple[Any, str, TaskResult]:
    """:func:`run_task` for a task with an ``outputSchema``: its JSON, text and cost."""
    agent = Agent(task_input.agent_name, task_input.agent, api_key, options)
    return agent.run_structured(
        prompt.text, prompt.material, schema, deadline, trace_parent=parent_context_from_env()
    )
