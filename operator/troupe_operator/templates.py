"""Prompt templates: what they refer to, and rendering them safely.

Prompts are Jinja templates run in Jinja's sandbox with strict undefined
names, so a user's template can neither reach Python internals nor silently
render a missing value as empty. Task names are DNS labels and so contain
hyphens, which Jinja would read as subtraction; ``tasks.my-task.output`` is
therefore rewritten to ``tasks["my-task"].output`` inside template tags, so the
Argo-style spelling users already know works as written.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache

from jinja2 import StrictUndefined, TemplateSyntaxError, nodes
from jinja2.sandbox import SandboxedEnvironment

TAG = re.compile(r"(\{\{.*?\}\}|\{%.*?%\})", re.DOTALL)
HYPHENATED_PATH = re.compile(r"\b(inputs|tasks)\.([A-Za-z0-9_]+(?:-[A-Za-z0-9_]+)+)")

_environment = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


class TemplateError(ValueError):
    """A template that cannot be parsed or rendered, with a message for people."""


@dataclass(frozen=True)
class References:
    """The inputs and tasks a template names."""

    inputs: frozenset[str] = field(default_factory=frozenset)
    tasks: frozenset[str] = field(default_factory=frozenset)


def _normalise(template: str) -> str:
    def quote_hyphenated(tag: re.Match[str]) -> str:
        return HYPHENATED_PATH.sub(r'\1["\2"]', tag.group(0))

    return TAG.sub(quote_hyphenated, template)


@lru_cache(maxsize=4096)
def _parse(template: str) -> nodes.Template:
    try:
        return _environment.parse(_normalise(template))
    except TemplateSyntaxError as error:
        raise TemplateError(
            f"template syntax error on line {error.lineno}: {error.message}"
        ) from None


def _key(node: nodes.Node) -> str | None:
    """The attribute or constant subscript a node selects (``x.key`` or ``x["key"]``)."""
    if isinstance(node, nodes.Getattr):
        return node.attr
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        return str(node.arg.value)
    return None


def references(template: str) -> References:
    """The ``inputs.X`` and ``tasks.NAME`` a template refers to.

    Raises TemplateError for a syntax error, and for ``inputs``/``tasks`` used
    in a way that cannot be checked (e.g. a computed key).
    """
    tree = _parse(template)
    inputs: set[str] = set()
    tasks: set[str] = set()
    selected: set[int] = set()
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        target = node.node  # type: ignore[attr-defined]  # both kinds have .node
        if isinstance(target, nodes.Name) and target.name in ("inputs", "tasks"):
            key = _key(node)
            if key is None:
                raise TemplateError(f"'{target.name}' must be followed by a literal name")
            (inputs if target.name == "inputs" else tasks).add(key)
            selected.add(id(target))
    for name in tree.find_all(nodes.Name):
        if name.name in ("inputs", "tasks") and id(name) not in selected:
            raise TemplateError(f"'{name.name}' must be followed by a name, e.g. {name.name}.NAME")
    return References(inputs=frozenset(inputs), tasks=frozenset(tasks))


def render(template: str, inputs: Mapping[str, str], outputs: Mapping[str, str]) -> str:
    """Render a prompt with the workflow's inputs and its upstream tasks' outputs."""
    tasks = {name: {"output": text} for name, text in outputs.items()}
    try:
        return _environment.from_string(_parse(template)).render(inputs=inputs, tasks=tasks)
    except TemplateError:
        raise
    except Exception as error:  # the sandbox and StrictUndefined raise many kinds
        raise TemplateError(f"template cannot be rendered: {error}") from None
