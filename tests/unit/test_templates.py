"""Prompt templates: what they reference, how they render, what they refuse."""

from __future__ import annotations

import pytest

from troupe_operator.templates import References, TemplateError, references, render


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
        {"market-research": "three vendors"},
    )
    assert text == "Topic databases; research: three vendors"


def test_hyphen_rewrite_leaves_plain_text_alone() -> None:
    assert render("see tasks.a-b and inputs.c-d", {}, {}) == "see tasks.a-b and inputs.c-d"


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
        render(template, {}, {})


@pytest.mark.parametrize("template", ["{{ inputs }}", "{{ inputs[name] }}", "{{ tasks|list }}"])
def test_references_refuse_uncheckable_uses(template: str) -> None:
    with pytest.raises(TemplateError):
        references(template)
