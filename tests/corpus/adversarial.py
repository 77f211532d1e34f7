"""Adversarial manifests: what a new user, a typo or an attacker hands `troupe` and `kubectl`.

Each entry is the text of one file and whether the cluster (API server + operator) accepts
it; `troupe validate` and `troupe run` must say the same. Most entries are the runnable base
(an Agent and a one-task Workflow) with one thing changed, so the change is the only reason
for a refusal. Every example in issue 9 is here; the ids say which.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

API = "troupe.dev/v1alpha1"


@dataclass(frozen=True)
class Entry:
    id: str
    text: str | bytes
    accepted: bool
    warns: bool = False
    """Accepted with a warning line from `troupe validate` and `troupe run`."""


def agent(name: str = "worker", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "Agent",
        "metadata": {"name": name},
        "spec": {"role": "executor", **spec},
    }


def workflow(name: str = "flow", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "Workflow",
        "metadata": {"name": name},
        "spec": {"tasks": [{"name": "only", "agent": "worker", "prompt": "Say hi."}], **spec},
    }


def tenant(name: str = "team", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "Tenant", "metadata": {"name": name}, "spec": spec}


def dump(*documents: Any) -> str:
    return yaml.safe_dump_all(documents, sort_keys=False, allow_unicode=True)


def base(change: Callable[[dict[str, Any]], None] | None = None, *extra: Any) -> str:
    """The runnable Agent + Workflow, the Workflow changed by `change`, then `extra`."""
    flow = workflow()
    if change is not None:
        change(flow)
    return dump(agent(), flow, *extra)


def task_field(**fields: Any) -> Callable[[dict[str, Any]], None]:
    return lambda flow: flow["spec"]["tasks"][0].update(fields)


def spec_field(**fields: Any) -> Callable[[dict[str, Any]], None]:
    return lambda flow: flow["spec"].update(fields)


def meta(**fields: Any) -> Callable[[dict[str, Any]], None]:
    return lambda flow: flow["metadata"].update(fields)


def without(*path: str) -> Callable[[dict[str, Any]], None]:
    def drop(flow: dict[str, Any]) -> None:
        target = flow
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return drop


def tasks(*entries: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    def replace(flow: dict[str, Any]) -> None:
        flow["spec"]["tasks"] = [{"agent": "worker", "prompt": "Go.", **t} for t in entries]

    return replace


def raw_workflow(spec_lines: str) -> str:
    """The base Agent and a Workflow whose spec is given as YAML text (for YAML-level tricks)."""
    return (
        dump(agent())
        + f"---\napiVersion: {API}\nkind: Workflow\nmetadata:\n  name: flow\n"
        + ("spec:\n" + spec_lines)
    )


ONE_TASK = "  tasks:\n  - name: only\n    agent: worker\n    prompt: Say hi.\n"


def alias_bomb(levels: int = 9) -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels)]
    return raw_workflow(ONE_TASK + "  inputs:\n" + "".join(f"    {line}\n" for line in lines))


def nested(depth: int) -> str:
    return raw_workflow(ONE_TASK + "  inputs:\n    deep: " + "[" * depth + "]" * depth + "\n")


def as_list(*items: dict[str, Any], kind: str = "List", api: str = "v1") -> str:
    return json.dumps({"apiVersion": api, "kind": kind, "items": list(items)}, indent=1)


def with_tenant(**spec: Any) -> str:
    document = tenant(namespaces=["team-a"], **spec)
    return base(None, document)


def renamed(kind: str, name: str) -> str:
    flow, worker = workflow(), agent()
    target = flow if kind == "Workflow" else worker
    target["metadata"]["name"] = name
    if kind == "Agent":
        flow["spec"]["tasks"][0]["agent"] = name
    return dump(worker, flow)


def _long_input(size: int) -> Callable[[dict[str, Any]], None]:
    return spec_field(inputs={"blob": "x" * size})


def _thousand_and_one(flow: dict[str, Any]) -> None:
    flow["spec"]["tasks"] = [
        {"name": f"t{i}", "agent": "worker", "prompt": "Go."} for i in range(1001)
    ]


FLAG = {"type": "object", "properties": {"go": {"type": "boolean"}}}
GO = {"when": "tasks.a.json.go == false"}  # the scripted model answers go: false
NO = {"when": "tasks.a.json.nope"}


def _wrap(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    flow = workflow()
    change(flow)
    return flow


ENTRIES: list[Entry] = [
    # --- what must be accepted everywhere
    Entry("base", base(), True),
    Entry(
        "date-input-is-a-string",
        raw_workflow(ONE_TASK + "  inputs:\n    launch: 2025-01-01\n"),
        True,
    ),
    Entry("integer-key-becomes-a-string", raw_workflow(ONE_TASK + "  inputs:\n    1: one\n"), True),
    Entry("fail-fast-boolean", base(spec_field(failFast=True)), True),
    Entry("json-stream", json.dumps(agent()) + "\n" + json.dumps(workflow()), True),
    Entry("v1-list-of-objects", as_list(agent(), workflow()), True),
    Entry(
        "workflow-list-kind",
        dump(agent()) + "---\n" + as_list(workflow(), kind="WorkflowList", api=API),
        True,
    ),
    Entry("valid-tenant", with_tenant(quota={"memory": "8Gi", "cpu": 4}), True),
    Entry(
        "tenant-cidr-with-host-bits",
        with_tenant(networkIsolation={"modelEgressCIDRs": ["10.0.0.1/8"]}),
        True,
    ),
    Entry(
        "other-kinds-alongside",
        base(
            None,
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "notes"},
                "data": {"a": "b"},
            },
        ),
        True,
    ),
    Entry("unicode-input-value", base(spec_field(inputs={"topic": "résumé ✨ 日本"})), True),
    Entry(
        "hyphenated-upstream",
        base(
            tasks(
                {"name": "first-step"},
                {
                    "name": "second",
                    "dependsOn": ["first-step"],
                    "prompt": "Use {{ tasks.first-step.output }}",
                },
            )
        ),
        True,
    ),
    Entry("prompt-at-its-size-limit", base(task_field(prompt="x" * 65_536)), True),
    Entry("crlf-line-endings", base().replace("\n", "\r\n"), True),
    Entry("utf8-byte-order-mark", "\ufeff" + base(), True),
    Entry("comments-and-separators", "# a comment\n---\n" + base() + "---\n# trailing\n", True),
    Entry("hostile-template-fails-its-task", base(task_field(prompt="{{ 'x' * 10**10 }}")), True),
    Entry("hostile-ljust-fails-its-task", base(task_field(prompt="{{ 'x'.ljust(10**10) }}")), True),
    Entry("quoted-number-input", raw_workflow(ONE_TASK + '  inputs:\n    count: "5"\n'), True),
    # --- types: validate was laxer than the cluster
    Entry("retries-as-string", base(task_field(retries="3")), False),
    Entry("fail-fast-yes-string", base(spec_field(failFast="yes")), False),
    Entry("parallelism-zero", base(spec_field(parallelism=0)), False),
    Entry("parallelism-over-limit", base(spec_field(parallelism=1001)), False),
    Entry("retries-over-limit", base(task_field(retries=11)), False),
    Entry("negative-timeout", base(task_field(timeoutSeconds=-1)), False),
    Entry("agent-as-a-list", base(task_field(agent=["worker", "other"])), False),
    Entry("task-name-as-a-number", base(task_field(name=5)), False),
    Entry("input-value-as-a-number", raw_workflow(ONE_TASK + "  inputs:\n    count: 5\n"), False),
    Entry("inputs-as-a-list", base(spec_field(inputs=["a"])), False),
    Entry("no-tasks", base(spec_field(tasks=[])), False),
    Entry("tasks-missing", base(without("spec", "tasks")), False),
    Entry("spec-missing", base(without("spec")), False),
    Entry("spec-as-text", base(lambda flow: flow.update(spec="run it")), False),
    Entry("unknown-spec-field", base(spec_field(bogus=1)), False),
    Entry("misspelt-depends-on", base(task_field(dependOn=["x"])), False),
    Entry("unknown-metadata-field", base(meta(nmae="x")), False),
    Entry(
        "json-with-a-yaml-separator",
        json.dumps(agent()) + "\n---\n" + json.dumps(workflow()),
        False,
    ),
    Entry(
        "json-nested-deep",
        json.dumps(agent())[:-1] + ', "x": ' + "[" * 5000 + "]" * 5000 + "}",
        False,
    ),
    Entry(
        "number-of-5000-digits",
        raw_workflow(ONE_TASK + "  timeoutSeconds: " + "9" * 5000 + "\n"),
        False,
    ),
    Entry("huge-integer", base(task_field(retries=10**30)), False),
    Entry(
        "infinite-number",
        raw_workflow(ONE_TASK.replace("prompt: Say hi.", "prompt: Say hi.\n    retries: .inf")),
        False,
    ),
    # --- kinds and lists
    Entry("kind-workflows", base(None, {**workflow("other"), "kind": "Workflows"}), False),
    Entry(
        "unserved-version", base(None, {**workflow("other"), "apiVersion": "troupe.dev/v2"}), False
    ),
    Entry(
        "kind-missing",
        base(None, {k: v for k, v in workflow("other").items() if k != "kind"}),
        False,
    ),
    Entry(
        "api-version-missing",
        base(None, {k: v for k, v in workflow("other").items() if k != "apiVersion"}),
        False,
    ),
    Entry(
        "list-holding-an-invalid-workflow", as_list(agent(), _wrap(task_field(retries="3"))), False
    ),
    Entry("empty-list", as_list(), False),
    Entry("empty-file", "", False),
    Entry("only-a-separator", "---\n", False),
    Entry("only-comments", "# nothing here\n", False),
    Entry("top-level-list", "- a\n- b\n", False),
    Entry("top-level-scalar", "just text\n", False),
    # --- names
    Entry("name-with-underscore-and-dot", renamed("Workflow", "Launch_Brief.V2"), False),
    Entry("name-with-capitals", renamed("Workflow", "LaunchBrief"), False),
    Entry("name-with-accents", renamed("Workflow", "résumé-flow"), False),
    Entry("agent-name-with-capitals", renamed("Agent", "LaunchBrief"), False),
    Entry("workflow-name-64-chars", renamed("Workflow", "w" * 64), False),
    Entry("agent-name-254-chars", renamed("Agent", "a" * 254), False),
    Entry("name-missing", base(without("metadata", "name")), False),
    Entry("bad-namespace", base(meta(namespace="Bad_NS")), False),
    Entry("bad-label-value", base(meta(labels={"team": "not ok!"})), False),
    Entry("name-with-zero-width-space", renamed("Workflow", "flow\u200b"), False),
    # --- traversal
    Entry("absolute-path-name", renamed("Workflow", "/tmp/x/absolute-escape"), False),
    Entry("relative-path-name", renamed("Workflow", "../relative-escape"), False),
    Entry("traversal-task-name", base(task_field(name="../x")), False),
    # --- tenants
    Entry("negative-memory", with_tenant(quota={"memory": "-5Gi"}), False),
    Entry("negative-cpu-number", with_tenant(quota={"cpu": -1}), False),
    Entry("not-a-cidr", with_tenant(networkIsolation={"modelEgressCIDRs": ["not-a-cidr"]}), False),
    Entry("port-70000", with_tenant(networkIsolation={"modelEgressPorts": [70000]}), False),
    Entry("port-minus-one", with_tenant(networkIsolation={"modelEgressPorts": [-1]}), False),
    Entry("tenant-without-namespaces", base(None, tenant(namespaces=[])), False),
    # --- templates and meaning
    Entry("prompt-of-spaces", base(task_field(prompt="   ")), False),
    Entry("prompt-of-a-jinja-comment", base(task_field(prompt="{# nothing #}")), False),
    Entry("template-syntax-error", base(task_field(prompt="{{ inputs. }}")), False),
    Entry("unknown-input", base(task_field(prompt="{{ inputs.nope }}")), False),
    Entry(
        "output-of-a-non-upstream-task",
        base(tasks({"name": "a"}, {"name": "b", "prompt": "{{ tasks.a.output }}"})),
        False,
    ),
    Entry(
        "dependency-cycle",
        base(tasks({"name": "a", "dependsOn": ["b"]}, {"name": "b", "dependsOn": ["a"]})),
        False,
    ),
    Entry("self-dependency", base(tasks({"name": "a", "dependsOn": ["a"]})), False),
    Entry("unknown-dependency", base(tasks({"name": "a", "dependsOn": ["ghost"]})), False),
    Entry("duplicate-task-names", base(tasks({"name": "a"}, {"name": "a"})), False),
    # --- structured outputs and conditions
    Entry(
        "condition-over-a-declared-field",
        base(tasks({"name": "a", "outputSchema": FLAG}, {"name": "b", "dependsOn": ["a"], **GO})),
        True,
    ),
    Entry("condition-that-does-not-parse", base(task_field(when="inputs.x ==")), False),
    Entry(
        "condition-over-an-undeclared-field",
        base(tasks({"name": "a", "outputSchema": FLAG}, {"name": "b", "dependsOn": ["a"], **NO})),
        False,
    ),
    Entry("output-schema-not-a-schema", base(task_field(outputSchema={"type": "thing"})), False),
    Entry("output-schema-a-string", base(task_field(outputSchema="object")), False),
    Entry(
        "duplicate-yaml-key-keeps-the-last-value",
        raw_workflow(ONE_TASK.replace("prompt: Say hi.", "prompt: Say hi.\n    prompt: Say bye.")),
        True,
        warns=True,
    ),
    # --- sizes and bombs
    Entry("prompt-over-its-limit", base(task_field(prompt="x" * 65_537)), False),
    Entry("thousand-and-one-tasks", base(_thousand_and_one), False),
    Entry("spec-too-big-to-record", base(_long_input(1_200_000)), False),
    Entry("document-over-request-limit", base(_long_input(3_300_000)), False),
    Entry("alias-bomb", alias_bomb(), False),
    Entry("nested-ten-thousand-deep", nested(10_000), False),
    Entry("nested-two-hundred-deep", nested(200), False),
    # --- encodings
    Entry(
        "latin-1-bytes-read-as-replacement-characters",
        base(spec_field(inputs={"topic": "café"})).encode("latin-1"),
        True,
    ),
    Entry("binary-garbage", bytes(range(256)) * 4, False),
    Entry("nul-byte", base().replace("Say hi.", "Say\x00hi."), False),
    Entry("tab-indentation", base().replace("\n  - name: only", "\n\t- name: only"), False),
]

assert len({entry.id for entry in ENTRIES}) == len(ENTRIES), "corpus ids must be unique"
