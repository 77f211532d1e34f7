"""The task's report to the operator: one JSON line in the termination log, on every exit.

The operator reads a task through its container's termination message and
nothing else, and Kubernetes keeps at most ``MAX_REPORT_BYTES`` of it. So every
run ends with a :class:`~troupe_operator.api.TaskReport`: on success the
result and a preview of the output; on failure the one-line reason and, when
the model was already called, the usage that was paid for. The report fits
by construction: a success has no message, a failure no preview, and even
text made only of characters JSON must escape stays under the limit (a test
holds this). This module writes a whole report or none, never a cut line.
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path
from typing import Any

from troupe_agent.scrub import scrub
from troupe_operator.api import TaskReport, TaskResult, TurnDecision
from troupe_operator.api.workflow import PREVIEW_CHARS


def preview_of(text: str) -> str:
    """The output's first ``PREVIEW_CHARS`` characters, with whitespace folded to single spaces
    and every secret the task was given scrubbed (a model may repeat an input from a Secret,
    and the preview goes to status)."""
    return " ".join(scrub(text).split())[:PREVIEW_CHARS]


def success_report(
    text: str,
    result: TaskResult,
    fields: dict[str, Any] | None = None,
    counts: dict[str, int] | None = None,
    scores: dict[str, list[float]] | None = None,
    decision: TurnDecision | None = None,
) -> TaskReport:
    """A success's report; ``fields`` are those of a structured output conditions read,
    already bounded by ``MAX_CONDITION_JSON_BYTES``, ``counts`` the lengths of its lists
    that forEach tasks expand over (at most ``MAX_COUNTED_LISTS`` small numbers),
    ``scores`` a judge's (at most 10 x 10 numbers to 4 decimals), and ``decision`` a
    supervisor turn's (at most five label-sized names), so the report still fits. The
    output's sha256 ``digest`` is what memoized tasks downstream key on."""
    return TaskReport(
        succeeded=True,
        result=result,
        digest=hashlib.sha256(text.encode()).hexdigest(),
        preview=preview_of(text),
        fields=fields,
        counts=counts,
        scores=scores,
        decision=decision,
    )


def failure_report(message: str, spent: TaskResult | None) -> TaskReport:
    """A failure's report; ``message`` is already one short scrubbed line (TaskFailed's)."""
    return TaskReport(succeeded=False, message=message, result=spent)


def write_report(report: TaskReport, termination_log: Path) -> None:
    """Write the report where Kubernetes reads the termination message; skipped if unwritable."""
    with contextlib.suppress(OSError):
        termination_log.write_text(report.encode() + "\n", encoding="utf-8")
