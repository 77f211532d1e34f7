"""The API models: defaults, bounds, and the camelCase wire format."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from troupe_operator.api import (
    ROLE_DEFAULTS,
    AgentSpec,
    Role,
    TaskInput,
    TenantSpec,
    TokenUsage,
    WorkflowSpec,
)

WORKFLOW = {
    "inputs": {"topic": "x"},
    "tasks": [
        {"name": "a", "agent": "researcher", "prompt": "p {{ inputs.topic }}"},
        {"name": "b", "agent": "writer", "prompt": "q", "dependsOn": ["a"], "timeoutSeconds": 30},
    ],
    "failFast": True,
    "parallelism": 2,
}


def test_workflow_round_trips_in_camel_case() -> None:
    spec = WorkflowSpec.model_validate(WORKFLOW)
    assert spec.tasks[1].depends_on == ["a"]
    assert spec.tasks[1].timeout_seconds == 30
    wire = spec.to_wire()
    assert wire["failFast"] is True
    assert wire["tasks"][1]["dependsOn"] == ["a"]
    assert "depends_on" not in wire["tasks"][1]
    assert WorkflowSpec.model_validate(wire) == spec


def test_workflow_defaults() -> None:
    spec = WorkflowSpec.model_validate({"tasks": [{"name": "a", "agent": "x", "prompt": "p"}]})
    assert spec.parallelism is None
    assert spec.fail_fast is False
    assert spec.retry_backoff_seconds == 10
    assert spec.tasks[0].retries == 0
    assert spec.tasks[0].depends_on == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"tasks": []}, "tasks"),
        ({"parallelism": 0}, "parallelism"),
        ({"timeoutSeconds": 0}, "timeoutSeconds"),
        ({"tasks": [{"name": "A", "agent": "x", "prompt": "p"}]}, "name"),
        ({"tasks": [{"name": "a" * 64, "agent": "x", "prompt": "p"}]}, "name"),
        ({"tasks": [{"name": "a", "agent": "x", "prompt": "p", "retries": 11}]}, "retries"),
        ({"tasks": [{"name": "a", "agent": "x", "prompt": ""}]}, "prompt"),
        ({"unknownField": 1}, "unknownField"),
    ],
)
def test_workflow_bounds(change: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as error:
        WorkflowSpec.model_validate({**WORKFLOW, **change})
    assert field in str(error.value)


@pytest.mark.parametrize("role", list(Role))
def test_agent_role_defaults_fill_unset_model_settings(role: Role) -> None:
    agent = AgentSpec.model_validate({"role": role.value})
    defaults = ROLE_DEFAULTS[role]
    assert agent.effective_temperature == defaults.temperature
    assert agent.effective_max_tokens == defaults.max_tokens
    assert agent.effective_system_prompt == defaults.system_prompt
    assert agent.model.base_url is None


def test_seed_role_defaults() -> None:
    seeds = {"researcher": (0.3, 1500), "planner": (0.5, 2000), "executor": (0.4, 1800)}
    seeds["reviewer"] = (0.2, 1200)
    for role, (temperature, max_tokens) in seeds.items():
        defaults = ROLE_DEFAULTS[Role(role)]
        assert (defaults.temperature, defaults.max_tokens) == (temperature, max_tokens)
    assert ROLE_DEFAULTS[Role.REVIEWER].self_review is True


def test_agent_overrides_and_wire_names() -> None:
    agent = AgentSpec.model_validate(
        {
            "role": "planner",
            "systemPrompt": "Plan.",
            "skills": ["budgeting"],
            "model": {
                "name": "llama3.1:8b",
                "baseURL": "http://ollama:11434/v1",
                "apiKeySecretRef": {"name": "ollama"},
                "temperature": 0,
                "maxTokens": 64,
            },
            "resources": {"limits": {"cpu": 1, "memory": "512Mi"}},
        }
    )
    assert agent.effective_temperature == 0
    assert agent.effective_max_tokens == 64
    assert agent.effective_system_prompt == "Plan.\nYour skills: budgeting."
    assert agent.model.api_key_secret_ref is not None
    assert agent.model.api_key_secret_ref.key == "api-key"
    wire = agent.to_wire()
    assert wire["model"]["baseURL"] == "http://ollama:11434/v1"
    assert wire["model"]["apiKeySecretRef"] == {"name": "ollama", "key": "api-key"}
    assert wire["resources"]["limits"] == {"cpu": 1, "memory": "512Mi"}


@pytest.mark.parametrize(
    "model",
    [{"temperature": 2.5}, {"maxRetries": 11}, {"baseURL": "ftp://x"}, {"timeoutSeconds": 0}],
)
def test_agent_model_bounds(model: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        AgentSpec.model_validate({"model": model})


@pytest.mark.parametrize(
    ("agent", "words"),
    [
        ({"members": ["scout"]}, "members are only for role supervisor, not custom"),
        ({"role": "supervisor", "members": ["a", "b", "a"]}, "listed more than once: a"),
        ({"role": "supervisor", "members": [f"m{i}" for i in range(17)]}, "at most 16 items"),
        ({"role": "supervisor", "maxIterations": 51}, "less than or equal to 50"),
        ({"role": "supervisor", "invokeTimeoutSeconds": 0}, "greater than or equal to 1"),
    ],
)
def test_only_a_supervisor_has_members_each_once_within_bounds(
    agent: dict[str, object], words: str
) -> None:
    with pytest.raises(ValidationError, match=words):
        AgentSpec.model_validate(agent)
    team = AgentSpec.model_validate({"role": "supervisor", "members": ["scout", "critic"]})
    assert (team.max_iterations, team.invoke_timeout_seconds) == (10, 300)


def test_tenant_defaults_are_isolating() -> None:
    tenant = TenantSpec.model_validate({"namespaces": ["team-a"]})
    assert tenant.pod_security == "restricted"
    assert tenant.network_isolation.enabled is True
    assert tenant.to_wire()["networkIsolation"]["modelEgressCIDRs"] == ["0.0.0.0/0"]
    with pytest.raises(ValidationError):
        TenantSpec.model_validate({"namespaces": []})
    with pytest.raises(ValidationError):
        TenantSpec.model_validate({"namespaces": ["a"], "quota": {"cpu": "lots"}})


def test_token_usage_adds_up() -> None:
    total = TokenUsage(input_tokens=3, output_tokens=4, total_tokens=7) + TokenUsage(
        input_tokens=1, output_tokens=1, total_tokens=2
    )
    assert total == TokenUsage(input_tokens=4, output_tokens=5, total_tokens=9)


def test_task_input_never_carries_a_key_field() -> None:
    fields = {field.alias or name for name, field in TaskInput.model_fields.items()}
    assert "apiKeyEnv" in fields
    assert not {"apiKey", "key", "secret"} & fields
