"""Prompt templates: what they reference, how they render, what they refuse."""

from __future__ import annotations

import pytest

from troupe_operator.api import MAX_PROMPT_CHARS
from troupe_operator.templates import (
    References,
    RenderValues,
    TemplateError,
    join_outputs,
    references,
    render,
)


def test_references_inputs_and_tasks_including_hyphenated_names() -> None:
    template = (
        "{{ inputs.topic }} {{ tasks.market-research.output }} {{ tasks['b'].output }}"
        "{% if inputs.flag %}yes{% endif %} plain text tasks.not-a-ref"
    )
    assert references(template) == References(
        inputs=frozenset({"topic", "flag"}), tasks=frozenset({"market-research", "b"})
    )


def test_render_fills_inputs_and_upstream_outputs() -> None:
    text = render(
        "Topic {{ inputs.topic }}; research: {{ tasks.market-research.output }}",
        {"topic": "databases"},
        RenderValues({"market-research": "three vendors"}),
    )
    assert text == "Topic databases; research: three vendors"


def test_hyphen_rewrite_leaves_plain_text_alone() -> None:
    text = "see tasks.a-b and inputs.c-d"
    assert render(text, {}, RenderValues()) == text


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ inputs.missing }}", "cannot be rendered"),
        ("{{ inputs.__class__.__mro__ }}", "unsafe"),
        ("{{ inputs. }}", "syntax error on line 1"),
    ],
)
def test_render_refuses(template: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        render(template, {}, RenderValues())


@pytest.mark.parametrize("template", ["{{ inputs }}", "{{ inputs[name] }}", "{{ tasks|list }}"])
def test_references_refuse_uncheckable_uses(template: str) -> None:
    with pytest.raises(TemplateError):
        references(template)


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ 'x' * 10**10 }}", "would build a string of 10000000000 characters"),
        ("{{ [0] * 10**9 }}", "would build a list of 1000000000 items"),
        ("{{ 10 ** (10**10) }}", "would build a number of 33219280949 bits"),
        ("{{ 'x'.ljust(10**10) }}", "would build a string of 10000000000 characters"),
        ("{{ 'x'.center(10**10) }}", "would build a string of 10000000000 characters"),
        ("{{ '1'.zfill(10**10) }}", "would build a string of 10000000000 characters"),
        ("{{ 'x'|center(10**10) }}", "would build a string of 10000000000 characters"),
        ("{{ 'a\nb'|indent(10**10) }}", "would build a string of"),
        ("{{ [1]|batch(10**10, 0)|list }}", "would build a list of 10000000000 items"),
        ("{{ ('x' * 3000000) + ('y' * 3000000) }}", "would build a string of 6000000 characters"),
        ("{{ ('\t' * 1000).expandtabs(10**7) }}", "would build a string of 10000000000 char"),
    ],
)
def test_render_refuses_values_too_big_to_build_before_building_them(
    template: str, message: str
) -> None:
    with pytest.raises(TemplateError, match=message):
        render(template, {}, RenderValues())


def test_render_stops_once_the_prompt_passes_max_prompt_chars() -> None:
    template = "{% for i in range(99999) %}{% for j in range(99999) %}x{% endfor %}{% endfor %}"
    with pytest.raises(TemplateError) as refused:
        render(template, {}, RenderValues())
    assert str(refused.value) == (
        f"prompt template renders to more than {MAX_PROMPT_CHARS} characters (MAX_PROMPT_CHARS)"
    )


def test_render_keeps_a_prompt_of_exactly_max_prompt_chars() -> None:
    text = render("{{ tasks.a.output }}", {}, RenderValues({"a": "x" * MAX_PROMPT_CHARS}))
    assert len(text) == MAX_PROMPT_CHARS


JOINED = "## r.0\na\n\n## r.1\nb"


@pytest.mark.parametrize(
    ("template", "values", "text"),
    [
        ("{{ item }}!", RenderValues(item="db", has_item=True), "db!"),
        ("{{ item.name }}", RenderValues(item={"name": "db"}, has_item=True), "db"),
        ("{{ tasks.r.outputs|length }}", RenderValues(output_lists={"r": ["a", "b"]}), "2"),
        ("{{ tasks.r.json[1].n }}", RenderValues({"r": "j"}, {"r": [{"n": 1}, {"n": 2}]}), "2"),
        ("{{ tasks.r.output }}", RenderValues({"r": join_outputs("r", "ab")}), JOINED),
    ],
)
def test_render_reads_items_and_fan_ins(template: str, values: RenderValues, text: str) -> None:
    assert render(template, {}, values) == text


@pytest.mark.parametrize(
    ("template", "item"),
    [
        ("About {{ item }}", True),
        ("About {{ item.name|upper }}", True),
        ("{% for item in tasks.a.outputs %}{{ item }}{% endfor %}", False),
        ("No item here", False),
    ],
)
def test_references_tell_whether_a_template_reads_a_foreach_item(template: str, item: bool) -> None:
    assert references(template).item is item
