"""``troupe submit``: create a file's Workflows (or one from a template), then optionally
wait for them or watch one.

A file is read and judged exactly as ``troupe validate`` judges it, after ``-p`` and the
naming flags are applied, and nothing is created unless every object passes. Its
Workflows are created; the other namespaced Troupe objects beside them (Agents, templates)
are created first when absent and left as they are when present (``submit`` is not
``apply``); anything else in the file (Secrets, Roles, Tenants) is left to ``kubectl
apply``, with one line saying so. Objects go to their own namespace, else ``-n``, else the
context's; an object whose namespace differs from ``-n`` is refused, as kubectl refuses it.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from argparse import Namespace
from typing import Final

from troupe.client import Troupe
from troupe.errors import InvalidRequest
from troupe.kube import Body
from troupe.runs import phase
from troupe.submission import (
    as_generated,
    from_template,
    named,
    parse_params,
    template_name,
    with_inputs,
)
from troupe_operator.admission import KINDS_BY_NAME
from troupe_operator.manifests import Manifest, ManifestError, load, warning_lines
from troupe_operator.remote import exit_codes
from troupe_operator.remote.views import as_data, changes, run_view, summary_line
from troupe_operator.validation import check_manifests

CLEAR_SCREEN: Final = "\x1b[H\x1b[2J"


def _say(line: str, machine_output: bool) -> None:
    """A line for people: stdout, unless stdout carries ``-o`` data."""
    print(line, file=sys.stderr if machine_output else sys.stdout, flush=True)


def _namespaced(body: Body, flag: str | None, target: str) -> Body:
    metadata = dict(body.get("metadata") or {})
    own = metadata.get("namespace")
    if flag is not None and own not in (None, "", flag):
        raise InvalidRequest(
            f"{body.get('kind')}/{metadata.get('name')}: its namespace {own!r} does not match "
            f"--namespace {flag!r}"
        )
    return {**body, "metadata": {**metadata, "namespace": own or target}}


def _file_objects(args: Namespace, target: str) -> tuple[list[Body], list[Body]]:
    """The Workflows and the other Troupe objects to create, checked as the server would."""
    try:
        manifests = load([args.file])
    except ManifestError as error:
        raise InvalidRequest(str(error)) from None
    for line in warning_lines(manifests):
        print(line, file=sys.stderr)
    runs: list[Manifest] = []
    others: list[Manifest] = []
    rest: list[Manifest] = []
    for manifest in manifests:
        kind = KINDS_BY_NAME.get(manifest.kind) if manifest.is_troupe else None
        if kind is None or not kind.namespaced:
            rest.append(manifest)
            print(
                f"{manifest.source}: {manifest.label}: not submitted (troupe submit creates "
                "Workflows and their Agents; use kubectl apply for the rest)",
                file=sys.stderr,
            )
        else:
            body = _namespaced(manifest.body, args.namespace, target)
            chosen = runs if manifest.kind == "Workflow" else others
            chosen.append(dataclasses.replace(manifest, body=body))
    if not runs:
        raise InvalidRequest(f"{args.file}: no Workflow to submit")
    workflows = _named(with_inputs([m.body for m in runs], parse_params(args.parameters)), args)
    runs = [
        dataclasses.replace(manifest, body=as_generated(body))
        for manifest, body in zip(runs, workflows, strict=True)
    ]
    problems = check_manifests([*runs, *others, *rest])
    if problems:
        for manifest, message in problems:
            print(f"{manifest.source}: {manifest.label}: {message}", file=sys.stderr)
        invalid = len({id(manifest) for manifest, _ in problems})
        raise InvalidRequest(f"{args.file}: {invalid} objects invalid; nothing submitted")
    return workflows, [manifest.body for manifest in others]


def _named(workflows: list[Body], args: Namespace) -> list[Body]:
    if args.name is not None:
        if len(workflows) != 1:
            raise InvalidRequest(f"--name names one Workflow; there are {len(workflows)}")
        return [named(workflows[0], name=args.name)]
    return [named(workflow, generate=args.generate_name) for workflow in workflows]


def submit(troupe: Troupe, args: Namespace) -> int:
    if args.timeout is not None and not (args.wait or args.watch):
        raise InvalidRequest("--timeout needs --wait or --watch")
    target = troupe.namespace
    if args.template is not None:
        template = template_name(args.template)
        workflows = _named([from_template(template, parse_params(args.parameters), target)], args)
        others: list[Body] = []
    else:
        workflows, others = _file_objects(args, target)
    if args.watch and len(workflows) != 1:
        raise InvalidRequest(f"--watch follows one Workflow, not {len(workflows)}: use --wait")
    data = args.output is not None
    for obj in others:
        created = troupe.create_if_absent(obj)
        label = f"{str(obj['kind']).lower()}/{obj['metadata']['name']}"
        _say(f"{label} {'created' if created else 'unchanged (exists)'}", data)
    submitted = []
    for workflow in workflows:
        submitted.append(troupe.submit(workflow))
        _say(f"workflow/{submitted[-1]['metadata']['name']} created", data)
    if data:
        print(as_data(submitted, args.output, single=len(submitted) == 1), flush=True)
    if args.watch:
        return _watch(troupe, submitted[0]["metadata"]["name"], args.timeout, data)
    if args.wait:
        return wait_for(troupe, [w["metadata"]["name"] for w in submitted], args.timeout, data)
    return exit_codes.OK


def wait_for(troupe: Troupe, names: list[str], timeout: float | None, data: bool = False) -> int:
    """Wait for each run in turn, within one ``timeout`` for all; 1 if any did not succeed."""
    deadline = None if timeout is None else time.monotonic() + timeout
    code = exit_codes.OK
    for name in names:
        remaining = None if deadline is None else max(0.001, deadline - time.monotonic())
        ended = troupe.wait(name, remaining)
        _say(summary_line(ended), data)
        if phase(ended) != "Succeeded":
            code = exit_codes.RUN_FAILED
    return code


def _watch(troupe: Troupe, name: str, timeout: float | None, data: bool) -> int:
    """A run as it goes: redrawn on a terminal, one line per change elsewhere."""
    redraw = sys.stdout.isatty() and not data
    previous: list[Body | None] = [None]

    def show(workflow: Body) -> None:
        if redraw:
            print(CLEAR_SCREEN + run_view(workflow), flush=True)
        else:
            for line in changes(previous[0], workflow):
                _say(line, data)
        previous[0] = workflow

    ended = troupe.wait(name, timeout, on_change=show)
    _say(summary_line(ended), data)
    return exit_codes.OK if phase(ended) == "Succeeded" else exit_codes.RUN_FAILED
