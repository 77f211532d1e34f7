"""Prompt templates: what they refer to, and rendering them safely and within bounds.

Prompts are Jinja templates run in Jinja's sandbox with strict undefined
names, so a user's template can neither reach Python internals nor silently
render a missing value as empty. Task names are DNS labels and so contain
hyphens, which Jinja would read as subtraction; ``tasks.my-task.output`` is
therefore rewritten to ``tasks["my-task"].output`` inside template tags, so the
Argo-style spelling users already know works as written.

A template is user code, so rendering is bounded: the prompt is produced as a
stream and refused once it passes ``MAX_PROMPT_CHARS``, and the operations
that size their result from a number (``*``, ``**``, ``+``, ``ljust``,
``center``, ``zfill``, ``expandtabs``, ``replace``, ``join`` and the
``center``, ``indent`` and ``batch`` filters) are checked *before* they run,
so ``'x' * 10**10`` is refused instead of allocated. This module refuses to
do anything process-wide: the time budget and the memory ceiling that catch
what slips through (nested loops, ``~`` concatenation) belong to whoever runs
the render, i.e. the task pod.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache, wraps
from typing import Any, Final

from jinja2 import StrictUndefined, TemplateSyntaxError, nodes
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment

from troupe_operator.api.task_io import MAX_PROMPT_CHARS

TAG = re.compile(r"(\{\{.*?\}\}|\{%.*?%\})", re.DOTALL)
HYPHENATED_PATH = re.compile(r"\b(inputs|tasks)\.([A-Za-z0-9_]+(?:-[A-Za-z0-9_]+)+)")

MAX_VALUE_SIZE: Final = 4 * MAX_PROMPT_CHARS
"""Most characters, items or bits one template operation may build: room to join a few
upstream outputs, far below what would strain a task's memory."""


ITEM: Final = "item"
"""The name a forEach instance's template reads its item by."""

FAN_IN_HEADING: Final = "## {task}.{index}"
"""Heads each instance's output where a forEach task's outputs are joined into one text."""


class TemplateError(ValueError):
    """A template that cannot be parsed or rendered, with a message for people."""


@dataclass(frozen=True)
class References:
    """The inputs and tasks a template names, and the tasks whose ``json`` it reads."""

    inputs: frozenset[str] = field(default_factory=frozenset)
    tasks: frozenset[str] = field(default_factory=frozenset)
    json_tasks: frozenset[str] = field(default_factory=frozenset)
    item: bool = False
    """Whether it reads ``item`` (a forEach instance's item) without binding it itself."""


_UNITS: Final = {"string": "characters", "list": "items", "number": "bits"}


def _check_size(kind: str, size: float) -> None:
    """Refuse a value of ``kind`` (string, list, number) and ``size`` before it is built."""
    if size > MAX_VALUE_SIZE:
        raise TemplateError(
            f"prompt template would build a {kind} of {size:.0f} {_UNITS[kind]}, more than the "
            f"{MAX_VALUE_SIZE} a template may build"
        )


def _check_sequence(template_value: Any, size: float) -> None:
    _check_size("string" if isinstance(template_value, str) else "list", size)


def _binop_size(operator: str, left: Any, right: Any) -> None:
    """Refuse ``*``, ``**`` and ``+`` whose result would be too big, before computing it."""
    sized = (str, list, tuple)
    if operator == "+" and isinstance(left, sized) and isinstance(right, sized):
        _check_sequence(left, len(left) + len(right))
    elif operator == "*" and isinstance(left, sized) and isinstance(right, int):
        _check_sequence(left, len(left) * right)
    elif operator == "*" and isinstance(right, sized) and isinstance(left, int):
        _check_sequence(right, len(right) * left)
    elif operator == "*" and isinstance(left, int) and isinstance(right, int):
        _check_size("number", left.bit_length() + right.bit_length())
    elif operator == "**" and isinstance(left, int) and isinstance(right, int) and right > 0:
        _check_size("number", math.log2(abs(left) or 1) * right)


def _str_method_size(text: str, method: str, args: tuple[Any, ...]) -> float:
    """The most characters a str method called with ``args`` can return (0: not sized here)."""
    if method in ("ljust", "rjust", "center", "zfill") and args and isinstance(args[0], int):
        return max(len(text), args[0])
    if method == "expandtabs":
        tab_size = args[0] if args and isinstance(args[0], int) else 8
        return len(text) + text.count("\t") * max(tab_size - 1, 0)
    if method == "replace" and len(args) >= 2 and all(isinstance(a, str) for a in args[:2]):
        old, new = args[0], args[1]
        matches = len(text) + 1 if old == "" else text.count(old)
        return len(text) + matches * len(new)
    if method == "join" and args and isinstance(args[0], (list, tuple)):
        parts = args[0]
        return sum(len(str(part)) for part in parts) + len(text) * max(len(parts) - 1, 0)
    return 0


def _sized_filter(
    function: Callable[..., Any], size: Callable[..., float], kind: str
) -> Callable[..., Any]:
    @wraps(function)
    def checked(*args: Any, **kwargs: Any) -> Any:
        _check_size(kind, size(*args, **kwargs))
        return function(*args, **kwargs)

    return checked


def _center_size(value: Any, width: int = 80) -> float:
    return max(len(str(value)), width)


def _indent_size(value: Any, width: int | str = 4, *args: Any, **kwargs: Any) -> float:
    text = str(value)
    step = len(width) if isinstance(width, str) else width
    return len(text) + (text.count("\n") + 1) * step


def _batch_size(value: Any, linecount: int, fill_with: Any = None) -> float:
    return linecount if fill_with is not None else 0


class BoundedSandbox(SandboxedEnvironment):
    """Jinja's sandbox, refusing operations whose result would be too big to build."""

    intercepted_binops = frozenset({"+", "*", "**"})

    def __init__(self) -> None:
        super().__init__(undefined=StrictUndefined, autoescape=False)
        sized_filters = {"center": _center_size, "indent": _indent_size}
        for name, size in sized_filters.items():
            self.filters[name] = _sized_filter(self.filters[name], size, "string")
        self.filters["batch"] = _sized_filter(self.filters["batch"], _batch_size, "list")

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _binop_size(operator, left, right)
        return super().call_binop(context, operator, left, right)

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        owner = getattr(obj, "__self__", None)
        if isinstance(owner, str):
            _check_size("string", _str_method_size(owner, obj.__name__, args))
        return super().call(context, obj, *args, **kwargs)


_environment = BoundedSandbox()


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
    json_tasks: set[str] = set()
    selected: set[int] = set()
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        target = node.node  # type: ignore[attr-defined]  # both kinds have .node
        if isinstance(target, nodes.Name) and target.name in ("inputs", "tasks"):
            key = _key(node)
            if key is None:
                raise TemplateError(f"'{target.name}' must be followed by a literal name")
            (inputs if target.name == "inputs" else tasks).add(key)
            selected.add(id(target))
        elif isinstance(target, (nodes.Getattr, nodes.Getitem)) and _key(node) == "json":
            task = _key(target)
            inner = target.node
            if task is not None and isinstance(inner, nodes.Name) and inner.name == "tasks":
                json_tasks.add(task)
    item_uses = {"load": False, "store": False}
    for name in tree.find_all(nodes.Name):
        if name.name in ("inputs", "tasks") and id(name) not in selected:
            raise TemplateError(f"'{name.name}' must be followed by a name, e.g. {name.name}.NAME")
        if name.name == ITEM:
            item_uses[name.ctx] = True
    return References(
        inputs=frozenset(inputs),
        tasks=frozenset(tasks),
        json_tasks=frozenset(json_tasks),
        item=item_uses["load"] and not item_uses["store"],
    )


def renders_nothing(template: str) -> bool:
    """A template whose every rendering is blank: only spaces, comments and empty tags.

    Such a prompt would send the model nothing to do and still cost a call.
    Raises TemplateError for a syntax error.
    """
    for node in _parse(template).iter_child_nodes():
        if not isinstance(node, nodes.Output):
            return False
        for child in node.nodes:
            if not isinstance(child, nodes.TemplateData) or child.data.strip():
                return False
    return True


def join_outputs(task: str, texts: Sequence[str]) -> str:
    """A forEach task's instance outputs as one text (``{{ tasks.NAME.output }}``)."""
    return "\n\n".join(
        f"{FAN_IN_HEADING.format(task=task, index=index)}\n{text}"
        for index, text in enumerate(texts)
    )


@dataclass(frozen=True)
class RenderValues:
    """What a prompt may read besides the inputs: upstream outputs by task name (a forEach
    task's joined), their decoded JSON (a list for a forEach task), each forEach task's
    outputs one by one, and a forEach instance's item."""

    outputs: Mapping[str, str] = field(default_factory=dict)
    json_outputs: Mapping[str, Any] = field(default_factory=dict)
    output_lists: Mapping[str, Sequence[str]] = field(default_factory=dict)
    item: Any = None
    has_item: bool = False


def render(template: str, inputs: Mapping[str, str], values: RenderValues) -> str:
    """Render a prompt with the workflow's inputs and its upstream tasks' outputs.

    ``{{ tasks.NAME.json.FIELD }}`` reads the decoded JSON of an upstream task that has
    an ``outputSchema``; ``{{ tasks.NAME.outputs }}`` lists a forEach task's outputs;
    ``{{ item }}`` is a forEach instance's item. Raises TemplateError for a template
    that cannot be rendered or breaks a limit; a MemoryError (the caller's memory
    ceiling) is left to the caller.
    """
    tasks: dict[str, dict[str, Any]] = {
        name: {"output": text, "json": values.json_outputs.get(name)}
        for name, text in values.outputs.items()
    }
    for name, texts in values.output_lists.items():
        tasks.setdefault(name, {"json": values.json_outputs.get(name)})["outputs"] = list(texts)
    extra = {ITEM: values.item} if values.has_item else {}
    compiled = _environment.from_string(_parse(template))
    chunks: list[str] = []
    size = 0
    try:
        for chunk in compiled.generate(inputs=inputs, tasks=tasks, **extra):
            size += len(chunk)
            if size > MAX_PROMPT_CHARS:
                raise TemplateError(
                    f"prompt template renders to more than {MAX_PROMPT_CHARS} characters "
                    "(MAX_PROMPT_CHARS)"
                )
            chunks.append(chunk)
    except (TemplateError, MemoryError):
        raise
    except Exception as error:  # the sandbox and StrictUndefined raise many kinds
        raise TemplateError(f"template cannot be rendered: {error}") from None
    return "".join(chunks)
