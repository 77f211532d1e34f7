"""The OpenTelemetry names Troupe's spans and metrics use, and the conventions they follow.

One vocabulary for the operator's spans and the agent runtime's, so that a
trace reads the same from the Workflow down to the model call. The ``gen_ai.*``
names are the GenAI semantic conventions as semantic-conventions v1.41.0
defines them: the last release that carried them (v1.42.0 moved them to the
``semantic-conventions-genai`` repository, which has made no release yet).
``troupe.*`` names are Troupe's own, for what the conventions have no name
for. This module holds names only: no OpenTelemetry import, so any layer may
use it.
"""

from __future__ import annotations

from typing import Final

SCHEMA_URL: Final = "https://opentelemetry.io/schemas/1.41.0"
"""The semantic-conventions version the names below are taken from."""

OPERATION_NAME: Final = "gen_ai.operation.name"
PROVIDER_NAME: Final = "gen_ai.provider.name"
AGENT_NAME: Final = "gen_ai.agent.name"
REQUEST_MODEL: Final = "gen_ai.request.model"
REQUEST_TEMPERATURE: Final = "gen_ai.request.temperature"
REQUEST_MAX_TOKENS: Final = "gen_ai.request.max_tokens"
RESPONSE_MODEL: Final = "gen_ai.response.model"
RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
TOKEN_TYPE: Final = "gen_ai.token.type"
ERROR_TYPE: Final = "error.type"
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"
NAMESPACE: Final = "k8s.namespace.name"
JOB_NAME: Final = "k8s.job.name"

INVOKE_WORKFLOW: Final = "invoke_workflow"
INVOKE_AGENT: Final = "invoke_agent"
CHAT: Final = "chat"
"""Values of ``gen_ai.operation.name``."""

WORKFLOW_NAME: Final = "troupe.workflow.name"
WORKFLOW_UID: Final = "troupe.workflow.uid"
WORKFLOW_PHASE: Final = "troupe.workflow.phase"
WORKFLOW_TASKS: Final = "troupe.workflow.tasks"
TASK_NAME: Final = "troupe.task.name"
TASK_ATTEMPT: Final = "troupe.task.attempt"
TASK_PHASE: Final = "troupe.task.phase"

TOKEN_USAGE: Final = "gen_ai.client.token.usage"
TOKEN_USAGE_BUCKETS: Final = (
    1,
    4,
    16,
    64,
    256,
    1024,
    4096,
    16384,
    65536,
    262144,
    1048576,
    4194304,
    16777216,
    67108864,
)
OPERATION_DURATION: Final = "gen_ai.client.operation.duration"
OPERATION_DURATION_BUCKETS: Final = (
    0.01,
    0.02,
    0.04,
    0.08,
    0.16,
    0.32,
    0.64,
    1.28,
    2.56,
    5.12,
    10.24,
    20.48,
    40.96,
    81.92,
)
"""The two client histograms and the explicit bucket boundaries the conventions recommend."""
