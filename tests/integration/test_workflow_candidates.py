"""Best of three end to end (issue 13 acceptance): the real operator, Job runner, task
processes and the OpenAI stub. Three candidates answer on three Agents, the stub answers the
judge's structured call with fixed scores, the operator picks the winner from the scores it
was reported and the candidates' tokens, and the winner's text reaches the downstream task's
prompt. The operator never sees a candidate's text."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.integration.troupe_driver import Troupe, agent, workflow
from tests.support.openai_stub import Answer, OpenAIStub, ToolCall
from troupe_agent.structured import OUTPUT_TOOL
from troupe_operator.workflow.candidates import pick

CRITERIA = ["accuracy", "depth", "clarity"]
WEIGHTS = [0.4, 0.3, 0.3]
SCORES = [[0.9, 0.5, 0.8], [0.6, 0.9, 0.6], [0.5, 0.5, 0.5]]
AGENT_MARK = re.compile(r"AGENT=([a-z]+)")
LONG_WINDED = 2000
"""Extra words candidate 1 (Agent a) answers with: about 2,000 more tokens than the others."""


def best_of_three_reply(body: dict[str, Any]) -> Answer:
    """The judge (offered the output tool) gets SCORES; a candidate answers as its Agent
    (``answer-from-a`` is candidate 1's, the long one); anything else echoes its prompt."""
    tools = [tool["function"]["name"] for tool in body.get("tools") or []]
    if OUTPUT_TOOL in tools:
        return ToolCall(
            OUTPUT_TOOL,
            {
                f"candidate-{i}": dict(zip(CRITERIA, row, strict=True))
                for i, row in enumerate(SCORES, 1)
            },
        )
    system, user = (str(body["messages"][i]["content"]) for i in (0, -1))
    found = AGENT_MARK.search(system)
    if found and "TASK=draft" in user:
        padding = " more" * LONG_WINDED if found.group(1) == "a" else ""
        return f"answer-from-{found.group(1)}{padding}"
    return f"reply to: {user[:100]}"


def agents(stub: OpenAIStub) -> list[dict[str, Any]]:
    made = [agent(name, stub.base_url) for name in ("a", "b", "c", "judge")]
    for document in made:
        document["spec"]["systemPrompt"] = f"AGENT={document['metadata']['name']}"
    return made


def best_of_three(name: str, cost_penalty: float) -> dict[str, Any]:
    judge = {
        "agent": "judge",
        "criteria": [{"name": n, "weight": w} for n, w in zip(CRITERIA, WEIGHTS, strict=True)],
        "costPenalty": cost_penalty,
    }
    return workflow(
        name,
        [
            {
                "name": "draft",
                "agent": "a",
                "prompt": "TASK=draft",
                "candidates": {"agents": ["a", "b", "c"], "judge": judge},
            },
            {
                "name": "use",
                "agent": "c",
                "dependsOn": ["draft"],
                "prompt": "TASK=use {{ tasks.draft.output }}",
            },
        ],
    )


def run(troupe: Troupe, stub: OpenAIStub, name: str, cost_penalty: float) -> dict[str, Any]:
    troupe.apply(*agents(stub), best_of_three(name, cost_penalty))
    with troupe.operator():
        status = troupe.wait_for_phase(name, "Succeeded", "Failed", timeout=120)
    assert status["phase"] == "Succeeded", status.get("message")
    return status


def use_prompt(stub: OpenAIStub) -> str:
    [prompt] = [
        json.dumps(request.body)
        for request in stub.chat_requests
        if "TASK=use" in json.dumps(request.body)
    ]
    return prompt


def test_best_of_three_the_judges_favourite_wins_and_feeds_the_downstream_prompt(
    troupe: Troupe,
) -> None:
    with OpenAIStub(reply=best_of_three_reply) as stub:
        status = run(troupe, stub, "best", cost_penalty=0)
    tasks = status["tasks"]
    draft = tasks["draft"]
    assert draft["resultOf"] == "draft.candidate-1"
    assert draft["message"] == "candidate-1 won with score 0.75 (3 of 3 candidates judged)"
    assert [(c["agent"], c["scores"], c["score"]) for c in draft["candidates"]] == [
        ("a", SCORES[0], 0.75),
        ("b", SCORES[1], 0.69),
        ("c", SCORES[2], 0.5),
    ]
    assert tasks["draft.judge"]["scores"] == {f"candidate-{i}": SCORES[i - 1] for i in (1, 2, 3)}
    assert {tasks[f"draft.candidate-{i}"]["phase"] for i in (1, 2, 3)} == {"Succeeded"}
    assert "usage" not in draft, "the parent carries no tokens: its units do"
    judge_requests = [r for r in stub.chat_requests if "tools" in (r.body or {})]
    assert len(judge_requests) == 1
    asked = json.dumps(judge_requests[0].body)
    assert all(f"answer-from-{x}" in asked for x in "abc")
    prompt = use_prompt(stub)
    assert "answer-from-a" in prompt
    assert "answer-from-b" not in prompt and "answer-from-c" not in prompt
    output = troupe.config_maps("best")[troupe.run("best").output_config_map("draft.candidate-1")]
    assert output["output"].startswith("answer-from-a")


def test_with_a_cost_penalty_the_cheaper_candidate_wins_as_computed(troupe: Troupe) -> None:
    with OpenAIStub(reply=best_of_three_reply) as stub:
        status = run(troupe, stub, "thrifty", cost_penalty=0.1)
    draft = status["tasks"]["draft"]
    tokens = [c["tokens"] for c in draft["candidates"]]
    assert tokens[0] > LONG_WINDED > 10 * max(tokens[1:])  # candidate 1 said 2,000 words more
    expected = pick(SCORES, WEIGHTS, 0.1, tokens)
    assert [c["score"] for c in draft["candidates"]] == expected.scores
    assert expected.winner == 1  # .75 - .1 x 2.0k+ is below .69 - .1 x a few dozen tokens
    assert draft["resultOf"] == "draft.candidate-2"
    assert "answer-from-b" in use_prompt(stub)
