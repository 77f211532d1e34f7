"""Workflows resolved from WorkflowTemplates and inputs from ConfigMaps and Secrets: the pure rules.

Merging with a template, reading inputs, what waits and what is an error; the core's Pending
verdict for what waits and its record of what a run was resolved from; the checks that keep
Secret inputs out of the operator's hands (conditions) and the one schema-and-model verdict on
"exactly one of".
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from troupe_operator import resolution
from troupe_operator.admission import object_problems, served_kind
from troupe_operator.api import (
    AgentSpec,
    ResolvedFrom,
    TemplatePin,
    WorkflowPhase,
    WorkflowSpec,
    WorkflowStatus,
    WorkflowTemplateSpec,
    secret_inputs,
)
from troupe_operator.controller import resolving
from troupe_operator.manifests import Manifest, parse_spec
from troupe_operator.spec_checks import check_spec, check_workflow
from troupe_operator.workflow import (
    Event,
    InvalidSpec,
    Observation,
    PrepareRun,
    UnresolvedSpec,
    reconcile,
    spec_hash,
)

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
PIN = TemplatePin(name="brief", uid="t-1", resource_version="7", generation=2)
TASKS = [
    {
        "name": "research",
        "agent": "a",
        "prompt": "Research {{ inputs.topic }} for {{ inputs.who }}",
    },
    {
        "name": "write",
        "agent": "a",
        "prompt": "Write {{ tasks.research.output }}",
        "dependsOn": ["research"],
    },
]


def template(**spec: Any) -> resolution.Template:
    body = {"inputs": {"topic": "databases", "who": "engineers"}, "tasks": TASKS, **spec}
    return resolution.Template(PIN, WorkflowTemplateSpec.model_validate(body))


def workflow(**spec: Any) -> WorkflowSpec:
    return WorkflowSpec.model_validate({"workflowTemplateRef": {"name": "brief"}, **spec})


def cm(name: str, key: str, input_name: str = "who") -> dict[str, Any]:
    return {"name": input_name, "configMapKeyRef": {"name": name, "key": key}}


def secret(name: str, key: str, input_name: str = "who") -> dict[str, Any]:
    return {"name": input_name, "secretKeyRef": {"name": name, "key": key}}


def merged(own: WorkflowSpec, base: resolution.Template | None = None) -> resolution.Merged:
    result = resolution.merge(own, base or template())
    assert isinstance(result, resolution.Merged), result
    return result


# -- merging with the template ---------------------------------------------------------


def test_the_template_s_tasks_run_with_the_workflow_s_inputs_over_its_defaults() -> None:
    result = merged(workflow(inputs={"topic": "caches"}))
    assert [task.name for task in result.spec.tasks] == ["research", "write"]
    assert result.spec.inputs == {"topic": "caches", "who": "engineers"}
    assert result.spec.workflow_template_ref is None
    assert result.resolved_from == ResolvedFrom(
        workflow_spec_hash=spec_hash(workflow(inputs={"topic": "caches"})), workflow_template=PIN
    )
    assert check_workflow("wf", result.spec) == []


@pytest.mark.parametrize(
    ("template_spec", "own", "inputs", "sources"),
    [
        # a template's ConfigMap default, overridden by a plain value of the Workflow's
        (
            {"inputsFrom": [cm("style", "who")], "inputs": {"topic": "t"}},
            {"inputs": {"who": "x"}},
            {"topic": "t", "who": "x"},
            [],
        ),
        # a template's plain default, overridden by a Secret input of the Workflow's
        ({}, {"inputsFrom": [secret("s", "k")]}, {"topic": "databases"}, ["who"]),
        # the template's own source kept when the Workflow gives none
        (
            {"inputsFrom": [cm("style", "who")], "inputs": {"topic": "t"}},
            {},
            {"topic": "t"},
            ["who"],
        ),
    ],
)
def test_inputs_and_their_sources_override_by_name(
    template_spec: dict[str, Any], own: dict[str, Any], inputs: dict[str, str], sources: list[str]
) -> None:
    result = merged(workflow(**own), template(**template_spec))
    assert result.spec.inputs == inputs
    assert [source.name for source in result.spec.inputs_from] == sources


@pytest.mark.parametrize(
    ("template_spec", "own", "settings"),
    [
        ({"parallelism": 2, "failFast": True}, {}, (2, True, None)),
        (
            {"parallelism": 2, "failFast": True},
            {"parallelism": 5, "timeoutSeconds": 60},
            (5, True, 60),
        ),
        # a default value on the Workflow cannot be told from none given: the template's stays
        ({"failFast": True}, {"failFast": False}, (None, True, None)),
    ],
)
def test_a_setting_other_than_its_default_overrides_the_template_s(
    template_spec: dict[str, Any], own: dict[str, Any], settings: tuple[Any, ...]
) -> None:
    spec = merged(workflow(**own), template(**template_spec)).spec
    assert (spec.parallelism, spec.fail_fast, spec.timeout_seconds) == settings


@pytest.mark.parametrize(
    ("own", "base", "expected"),
    [
        (
            workflow(),
            None,
            UnresolvedSpec("WorkflowTemplateNotFound", "WorkflowTemplate 'brief' does not exist"),
        ),
        (
            workflow(inputs={"tone": "dry", "topic": "x"}),
            template(),
            InvalidSpec(
                [
                    "input 'tone' is not an input of WorkflowTemplate 'brief' "
                    "(its inputs: topic, who)"
                ]
            ),
        ),
        (
            workflow(inputs={"who": "x"}, inputsFrom=[secret("s", "k")]),
            template(),
            InvalidSpec(["input 'who' is given both in inputs and in inputsFrom"]),
        ),
        (
            workflow(inputsFrom=[secret("s", "k"), cm("c", "k")]),
            template(),
            InvalidSpec(["input 'who' is given 2 times in inputsFrom"]),
        ),
        (
            workflow(),
            resolution.Template(PIN, None, ["spec.tasks: Field required"]),
            InvalidSpec(["WorkflowTemplate 'brief' is invalid: spec.tasks: Field required"]),
        ),
    ],
)
def test_what_waits_and_what_is_an_error(
    own: WorkflowSpec, base: resolution.Template | None, expected: object
) -> None:
    if base is None:
        assert resolution.merge(own, None) == expected
    else:
        result = resolution.merge(own, base)
        assert isinstance(result, type(expected)) and result == expected


def test_a_workflow_without_a_template_is_resolved_only_for_its_inputs() -> None:
    own = WorkflowSpec.model_validate(
        {"tasks": TASKS[:1], "inputs": {"topic": "t"}, "inputsFrom": [cm("c", "k")]}
    )
    assert resolution.needs_resolution(own)
    result = merged(own)
    assert result.spec is own and result.resolved_from.workflow_template is None
    plain = WorkflowSpec.model_validate({"tasks": TASKS[:1]})
    assert not resolution.needs_resolution(plain)


# -- reading inputs --------------------------------------------------------------------


def test_config_map_values_are_pinned_and_secret_inputs_stay_references() -> None:
    own = workflow(inputsFrom=[cm("style", "audience"), secret("creds", "token", "topic")])
    result = resolution.finish(merged(own), {"style": {"audience": "CTOs"}}, {"creds": {"token"}})
    assert isinstance(result, WorkflowSpec)
    assert result.inputs == {"who": "CTOs"}
    assert [
        (s.name, s.secret_key_ref.name if s.secret_key_ref else None) for s in result.inputs_from
    ] == [("topic", "creds")]
    assert [env for env, _ in secret_inputs(result.inputs_from)] == ["TROUPE_SECRET_INPUT_0"]
    assert check_workflow("wf", result) == []


@pytest.mark.parametrize(
    ("config_maps", "secrets", "message"),
    [
        ({}, {"creds": {"token"}}, "ConfigMap 'style' (input 'who') does not exist"),
        (
            {"style": {"other": "x"}},
            {"creds": {"token"}},
            "ConfigMap 'style' has no key 'audience' (input 'who')",
        ),
        (
            {"style": {"audience": "x"}},
            {"creds": None},
            "Secret 'creds' (input 'topic') does not exist",
        ),
        (
            {"style": {"audience": "x"}},
            {"creds": {"api-key"}},
            "Secret 'creds' has no key 'token' (input 'topic')",
        ),
    ],
)
def test_a_missing_config_map_secret_or_key_waits(
    config_maps: dict[str, Any], secrets: dict[str, Any], message: str
) -> None:
    own = workflow(inputsFrom=[cm("style", "audience"), secret("creds", "token", "topic")])
    assert resolution.finish(merged(own), config_maps, secrets) == UnresolvedSpec(
        "InputSourceNotFound", message
    )


# -- checks ----------------------------------------------------------------------------


def test_a_condition_may_not_read_a_secret_input_but_a_prompt_may() -> None:
    spec = WorkflowSpec.model_validate(
        {
            "inputs": {"mode": "fast"},
            "inputsFrom": [secret("s", "k", "token")],
            "tasks": [
                {
                    "name": "a",
                    "agent": "a",
                    "prompt": "{{ inputs.token }}",
                    "when": "inputs.mode == 'fast'",
                },
                {"name": "b", "agent": "a", "prompt": "p", "when": "inputs.token == 'x'"},
            ],
        }
    )
    assert check_spec(spec) == [
        "task 'b' when reads input 'token', which comes from a Secret: the operator decides "
        "conditions and never holds a Secret's value"
    ]


def test_an_unresolved_spec_is_never_checked_as_one_without_tasks() -> None:
    assert check_spec(workflow()) == [
        "the spec names WorkflowTemplate 'brief': its tasks are checked once it is resolved "
        "(troupe_operator.resolution)"
    ]


def manifest(kind: str, spec: dict[str, Any]) -> Manifest:
    body = {
        "apiVersion": "troupe.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": "x"},
        "spec": spec,
    }
    return Manifest("f.yaml", body)


@pytest.mark.parametrize(
    ("kind", "spec", "problem"),
    [
        ("Workflow", {}, "spec: must give tasks or workflowTemplateRef"),
        (
            "Workflow",
            {"tasks": TASKS, "workflowTemplateRef": {"name": "b"}},
            "spec: must give tasks or workflowTemplateRef, not both tasks and workflowTemplateRef",
        ),
        (
            "Workflow",
            {"workflowTemplateRef": {"name": "b"}, "tasks": []},
            "spec.tasks: must have at least 1 item, not 0",
        ),
        (
            "Workflow",
            {"workflowTemplateRef": {"name": "b"}, "inputsFrom": [{"name": "a"}]},
            "spec.inputsFrom[0]: must give configMapKeyRef or secretKeyRef",
        ),
        (
            "WorkflowTemplate",
            {"tasks": TASKS, "workflowTemplateRef": {"name": "b"}},
            "spec.workflowTemplateRef: unknown field",
        ),
        ("WorkflowTemplate", {"inputs": {"a": "b"}}, "spec.tasks: is required"),
    ],
)
def test_the_schema_says_exactly_one_as_the_models_do(
    kind: str, spec: dict[str, Any], problem: str
) -> None:
    body = manifest(kind, spec).body
    served = served_kind(body["apiVersion"], kind)
    assert served is not None
    assert any(found.startswith(problem) for found in object_problems(served, body))
    assert parse_spec(manifest(kind, spec))[0] is None


def test_the_models_say_it_in_their_own_words_too() -> None:
    with pytest.raises(ValueError, match="give tasks, or a workflowTemplateRef to take them from"):
        WorkflowSpec.model_validate({})
    with pytest.raises(ValueError, match="give tasks or a workflowTemplateRef, not both"):
        WorkflowSpec.model_validate({"tasks": TASKS, "workflowTemplateRef": {"name": "b"}})
    with pytest.raises(ValueError, match="give exactly one of configMapKeyRef and secretKeyRef"):
        WorkflowSpec.model_validate({"tasks": TASKS, "inputsFrom": [{"name": "a"}]})


# -- the core: waiting, and the record of what a run was resolved from ------------------


def observe(spec: Any, status: WorkflowStatus | None = None, **fields: Any) -> Observation:
    return Observation("team", "wf", "uid-1", 1, spec, status or WorkflowStatus(), T0, **fields)


def test_an_unresolved_run_waits_pending_with_one_warning() -> None:
    waiting = UnresolvedSpec("WorkflowTemplateNotFound", "WorkflowTemplate 'brief' does not exist")
    first = reconcile(observe(waiting))
    assert first.status.phase == WorkflowPhase.PENDING
    assert first.status.message == (
        "waiting: WorkflowTemplate 'brief' does not exist (the run starts once it does)"
    )
    ready = {c.type: c for c in first.status.conditions}["Ready"]
    assert (ready.status, ready.reason) == ("False", "WorkflowTemplateNotFound")
    assert [(e.type, e.reason) for e in first.actions if isinstance(e, Event)] == [
        ("Warning", "WorkflowTemplateNotFound")
    ]
    assert reconcile(observe(waiting, first.status)).actions == []


def test_what_the_run_was_resolved_from_is_recorded_once_it_starts() -> None:
    spec = merged(workflow()).spec
    source = ResolvedFrom(workflow_spec_hash="abc", workflow_template=PIN)
    decision = reconcile(observe(spec, agents={"a": AgentSpec()}, resolved_from=source))
    assert any(isinstance(action, PrepareRun) for action in decision.actions)
    assert decision.status.resolved_from == source
    assert decision.status.to_wire()["resolvedFrom"]["workflowTemplate"]["resourceVersion"] == "7"
    held = reconcile(observe(spec, resolved_from=source))  # its Agent missing: not started
    assert held.status.resolved_from is None


# -- the shell: which spec the core gets -------------------------------------------------


def test_a_template_object_is_parsed_once_with_its_version_or_why_not() -> None:
    body = {
        "metadata": {"name": "brief", "uid": "t-1", "resourceVersion": "7", "generation": 2},
        "spec": {"tasks": TASKS},
    }
    read = resolving.template_of(body)
    assert read.pin == PIN and read.spec is not None and not read.problems
    broken = resolving.template_of({**body, "spec": {"inputs": {}}})
    assert broken.spec is None and broken.problems == ["spec.tasks: Field required"]


@pytest.mark.parametrize(
    ("spec_hash_set", "own", "pinned"),
    [
        (True, workflow(inputs={"topic": "caches"}), True),
        (True, workflow(inputs={"topic": "queues"}), False),  # the Workflow was edited
        (False, workflow(inputs={"topic": "caches"}), False),  # not started: resolve again
    ],
)
def test_a_started_run_follows_its_record_while_its_own_spec_is_unchanged(
    spec_hash_set: bool, own: WorkflowSpec, pinned: bool
) -> None:
    started = merged(workflow(inputs={"topic": "caches"}))
    status = WorkflowStatus(
        spec_hash=spec_hash(started.spec) if spec_hash_set else None,
        resolved_from=started.resolved_from,
    )
    assert resolving.pinned(own, status) is pinned
