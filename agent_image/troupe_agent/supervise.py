"""One unit of a Workflow's ``supervise`` task, in its pod: a supervisor turn or a delegation.

A **turn** runs on the supervisor Agent. It reads every earlier turn's decision and its
delegations' outputs from their ConfigMaps (each output cut to ``MAX_OUTPUT`` characters,
the cut said in the text, as the team endpoint does), and asks the model for a decision with
the tools and messages the team endpoint uses (``troupe_agent.decisions``), several
``delegate`` calls at once allowed up to ``maxConcurrent``. A decision that names a
non-member, delegates more than ``maxConcurrent`` steps, gives an empty instruction or
finishes with an empty answer is a *retryable* failure naming the rule: another call may
decide better. A delegating turn writes its decision as JSON (``{"delegations": [{"member",
"instruction"}]}``, each instruction cut to ``MAX_INSTRUCTION``); a finishing turn writes the
answer, which is the task's output. Either way its report carries only the decision's shape
(``TurnDecision``): the operator never sees an instruction.

A **delegation** runs on its member Agent with its instruction, read from the turn's
ConfigMap, as the whole prompt: the supervisor is told that a member sees nothing else.

This module refuses to read the task's own upstream outputs (task mode renders the request
and hands it in) and to run the loop (the operator's core does, from the reports).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from troupe_agent.agent import Agent, AgentOptions, run_task
from troupe_agent.conversations import MAX_INSTRUCTION, MAX_OUTPUT, shortened
from troupe_agent.decisions import (
    Delegation,
    Finish,
    decision_messages,
    decision_tools,
    read_decision,
)
from troupe_agent.failures import TaskFailed
from troupe_agent.prompts import TaskPrompt, task_message
from troupe_agent.retry import Deadline
from troupe_agent.telemetry import parent_context_from_env
from troupe_operator.api import (
    EXIT_PERMANENT,
    EXIT_RETRYABLE,
    InstructionRef,
    Supervise,
    TaskInput,
    TaskResult,
    TaskSpec,
    TurnDecision,
    TurnRefs,
)

ReadOutput = Callable[[str, str], str]
"""Reads the output text of a unit (named for messages) from its ConfigMap (or file)."""


@dataclass(frozen=True)
class Step:
    """One completed delegation, as the next turns read it."""

    member: str
    instruction: str
    output: str


@dataclass(frozen=True)
class StepOutcome:
    """What a unit produced: its output text, its cost, and a turn's decision."""

    text: str
    result: TaskResult
    decision: TurnDecision | None = None


def run_supervise_step(
    task_input: TaskInput,
    task: TaskSpec,
    request: Callable[[], TaskPrompt],
    read: ReadOutput,
    api_key: str | None,
    deadline: Deadline,
    options: AgentOptions,
) -> StepOutcome:
    """Run the turn or the delegation ``task_input`` names; ``request`` renders the task's
    prompt (only a turn needs it). Raises TaskFailed or ModelCallError."""
    loop, role = task.supervise, task_input.supervise
    if loop is None or role is None:
        raise TaskFailed(
            f"task '{task.name}' is not a supervise task in the run's spec", EXIT_PERMANENT
        )
    if role.instruction is not None:
        instruction = _instruction(role.instruction, task_input.agent_name, read)
        text, result = run_task(task_input, TaskPrompt(instruction), api_key, deadline, options)
        return StepOutcome(text, result)
    prompt = request()
    steps = _history(role.history, read)
    agent = Agent(task_input.agent_name, task_input.agent, api_key, options)
    messages = decision_messages(
        task_input.agent,
        loop.members,
        task_message(prompt.text, prompt.material),
        steps,
        at_once=loop.max_concurrent,
    )
    reply = agent.call_tools(
        messages,
        decision_tools(loop.members),
        deadline,
        parent_context_from_env(),
        parallel=loop.max_concurrent > 1,
    )
    try:
        decision = read_decision(reply.tool_calls, reply.text)
    except ValueError as error:
        raise TaskFailed(str(error), EXIT_RETRYABLE) from error
    if isinstance(decision, Finish):
        if not decision.answer.strip():
            raise TaskFailed("the supervisor finished with an empty answer", EXIT_RETRYABLE)
        answer = decision.answer
        return StepOutcome(answer, agent.result(answer, reply.stats), TurnDecision(finished=True))
    delegations = _checked(decision, loop)
    text = json.dumps(
        {"delegations": [{"member": d.member, "instruction": d.instruction} for d in delegations]},
        ensure_ascii=False,
        indent=2,
    )
    members = [d.member for d in delegations]
    return StepOutcome(text, agent.result(text, reply.stats), TurnDecision(members=members))


def _checked(delegations: Sequence[Delegation], loop: Supervise) -> list[Delegation]:
    """The delegations, instructions cut to MAX_INSTRUCTION; TaskFailed naming a broken rule."""
    stranger = next((d.member for d in delegations if d.member not in loop.members), None)
    if stranger is not None:
        raise TaskFailed(
            f"the supervisor delegated to {stranger!r}, not a member ({', '.join(loop.members)})",
            EXIT_RETRYABLE,
        )
    if len(delegations) > loop.max_concurrent:
        raise TaskFailed(
            f"the supervisor delegated {len(delegations)} steps in one turn, more than "
            f"supervise.maxConcurrent ({loop.max_concurrent})",
            EXIT_RETRYABLE,
        )
    if any(not d.instruction.strip() for d in delegations):
        raise TaskFailed("the supervisor delegated a step with no instruction", EXIT_RETRYABLE)
    return [Delegation(d.member, shortened(d.instruction, MAX_INSTRUCTION)) for d in delegations]


def _history(history: Sequence[TurnRefs], read: ReadOutput) -> list[Step]:
    """Every earlier delegation with its output (cut to MAX_OUTPUT), in order."""
    steps = []
    for turn in history:
        delegations = _decision(turn.turn, read(f"{turn.turn} (a supervisor turn)", turn.decision))
        if len(delegations) != len(turn.outputs):
            raise TaskFailed(
                f"turn '{turn.turn}' decided {len(delegations)} delegations, but the input "
                f"names {len(turn.outputs)} outputs",
                EXIT_PERMANENT,
            )
        pairs = zip(delegations, turn.outputs, strict=True)
        for number, (delegation, config_map) in enumerate(pairs, start=1):
            output = shortened(read(f"delegation {number} of {turn.turn}", config_map), MAX_OUTPUT)
            steps.append(Step(delegation.member, delegation.instruction, output))
    return steps


def _instruction(ref: InstructionRef, member: str, read: ReadOutput) -> str:
    """This delegation's instruction, from the decision of the turn that made it."""
    delegations = _decision(ref.turn, read(f"{ref.turn} (a supervisor turn)", ref.decision))
    if ref.index >= len(delegations) or delegations[ref.index].member != member:
        raise TaskFailed(
            f"turn '{ref.turn}' has no delegation {ref.index + 1} to member '{member}'",
            EXIT_PERMANENT,
        )
    return delegations[ref.index].instruction


def _decision(turn: str, text: str) -> list[Delegation]:
    """The delegations a turn's output holds; a turn of this run wrote it, so a bad one is
    permanent."""
    try:
        return [
            Delegation(str(item["member"]), str(item["instruction"]))
            for item in json.loads(text)["delegations"]
        ]
    except (ValueError, KeyError, TypeError) as error:
        raise TaskFailed(
            f"the output of turn '{turn}' is not a decision (JSON with delegations): {error}",
            EXIT_PERMANENT,
        ) from error
