"""Structured output: asking the model for JSON that matches a task's ``outputSchema``.

The model is offered one tool, :data:`OUTPUT_TOOL`, whose parameters are the schema, and
must call it (OpenAI tool calling through ``langchain-openai``; every OpenAI-compatible
server that does tools supports it, where ``response_format: json_schema`` is rarer). A
reply without the call is read as JSON text, for servers that answer tool requests in
prose. Whatever arrives is validated with ``jsonschema`` against the schema; a reply that
does not match is a *retryable* failure (another attempt asks again) whose message names
the first mismatch. The scripted model answers with :func:`minimal_instance`, so offline
runs produce schema-valid JSON, labelled scripted as ever. This module refuses to repair a
reply: a mismatch is reported, never patched.
"""

from __future__ import annotations

import json
from typing import Any, Final

from jsonschema import Draft202012Validator

from troupe_agent.failures import TaskFailed
from troupe_operator.api import EXIT_PERMANENT, EXIT_RETRYABLE
from troupe_operator.api.workflow import MAX_CONDITION_JSON_BYTES
from troupe_operator.expressions import JsonValue, lookup, project

OUTPUT_TOOL: Final = "submit_output"
"""The one tool a structured call offers; its arguments are the output."""

_SHOWN: Final = 120


def output_tool(schema: dict[str, Any]) -> dict[str, Any]:
    """The OpenAI function the model must call with its answer as arguments."""
    return {
        "type": "function",
        "function": {
            "name": OUTPUT_TOOL,
            "description": "Submit the answer to the task as JSON matching the parameters.",
            "parameters": schema,
        },
    }


def reply_json(text: str, tool_calls: tuple[Any, ...]) -> JsonValue:
    """The JSON a reply carries: the output tool's arguments, else the text parsed as JSON."""
    for call in tool_calls:
        if call.get("name") == OUTPUT_TOOL:
            return call.get("args")
    body = text.strip()
    if body.startswith("```"):  # a fenced block, as some servers answer
        body = body.strip("`").removeprefix("json").strip()
    try:
        return json.loads(body)
    except ValueError:
        raise TaskFailed(
            f"the model's reply is not JSON for outputSchema (no {OUTPUT_TOOL} call, text "
            f"{json.dumps(text[:_SHOWN])})",
            EXIT_RETRYABLE,
        ) from None


def check_output(value: JsonValue, schema: dict[str, Any]) -> None:
    """Raise a retryable TaskFailed naming the first way ``value`` breaks the schema."""
    error = next(iter(Draft202012Validator(schema).iter_errors(value)), None)
    if error is None:
        return
    where = "/".join(str(part) for part in error.absolute_path) or "(root)"
    raise TaskFailed(
        f"the model's reply does not match outputSchema at {where}: {error.message[:200]}",
        EXIT_RETRYABLE,
    )


def condition_fields(value: JsonValue, paths: frozenset[tuple[str, ...]]) -> dict[str, Any] | None:
    """The fields conditions read, for the report; None when none are read.

    Over ``MAX_CONDITION_JSON_BYTES`` is permanent: the same schema allows the same sizes.
    """
    if not paths:
        return None
    fields = project(value, paths)
    size = len(json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode())
    if size > MAX_CONDITION_JSON_BYTES:
        raise TaskFailed(
            f"the output fields conditions read are {size} bytes as JSON; at most "
            f"{MAX_CONDITION_JSON_BYTES} (MAX_CONDITION_JSON_BYTES): conditions should test "
            "flags, numbers and short names",
            EXIT_PERMANENT,
        )
    return fields


def list_lengths(value: JsonValue, lists: dict[str, tuple[str, ...]]) -> dict[str, int] | None:
    """The length of each list forEach tasks expand over, by count key; None when none.

    An absent or null list is empty; anything else at the path is not a list, which the
    schema should have refused, so it is permanent.
    """
    if not lists:
        return None
    counts = {}
    for key, path in lists.items():
        found = lookup(value, path)
        if found is not None and not isinstance(found, list):
            raise TaskFailed(
                f"forEach expands over {key} of this task's output, which is a "
                f"{type(found).__name__}, not a list",
                EXIT_PERMANENT,
            )
        counts[key] = len(found or [])
    return counts


def minimal_instance(schema: Any) -> JsonValue:
    """A small value that matches ``schema``: what the scripted model answers.

    ``default``, ``const`` and the first of ``enum`` or ``examples`` win; otherwise the
    least value of the type, objects with every declared property. Covers what output
    schemas use (types, properties, items, enum, const, anyOf/oneOf, lengths, minimum);
    a schema beyond that may get a value that fails validation, reported as ever.
    """
    if not isinstance(schema, dict):
        return None
    for key in ("default", "const"):
        if key in schema:
            return schema[key]
    for key in ("enum", "examples"):
        if schema.get(key):
            return schema[key][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return minimal_instance(schema[key][0])
    kind = schema.get("type", "object" if "properties" in schema else "null")
    if isinstance(kind, list):
        kind = kind[0]
    match kind:
        case "object":
            properties = schema.get("properties") or {}
            return {name: minimal_instance(sub) for name, sub in properties.items()}
        case "array":
            return [minimal_instance(schema.get("items")) for _ in range(schema.get("minItems", 0))]
        case "string":
            return "scripted"[: schema.get("maxLength", 8)].ljust(schema.get("minLength", 0), "x")
        case "integer" | "number":
            low = schema.get("minimum", schema.get("exclusiveMinimum", -1) + 1)
            return int(low) if kind == "integer" else low
        case "boolean":
            return False
    return None
