"""Best of N: candidates, one judge, and the winner picked by a fixed rule.

A task with ``candidates`` starts, once ready, N candidate units
(``NAME.candidate-1`` … ``NAME.candidate-N``), each running the task's prompt as an
ordinary task would, on its own Agent; the parent records them in status
(``candidates``), so a restarted operator reads that it started. Once every candidate
has finished, one judge unit (``NAME.judge``) scores those that succeeded; its pod
reports the scores (``TaskReport.scores``, kept in its status), never the texts. The
winner is then decided here, by :func:`pick`: the weighted score (sum of weight x score)
minus ``costPenalty`` x tokens / 1000, rounded to 6 decimals, the lowest candidate
number winning a tie. The parent's output is the winner's (``resultOf``).

Failures: a candidate that fails (its retries spent) is not judged, and the others go
on; all failed → the parent fails (``AllCandidatesFailed``), no judge runs; only one
succeeded → it wins unjudged, and no judge is paid for (:func:`needs_judge`). A judge that
fails, or whose scores are lost or malformed, fails the parent (``JudgeFailed``). This
module refuses to look at Jobs (units are settled by the core) or at any text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from troupe_operator.api import CandidateStatus, TaskPhase, TaskSpec, TaskStatus
from troupe_operator.workflow.tasks import FINISHED, failed_for_good
from troupe_operator.workflow.units import candidate_keys, suffix_of

ALL_CANDIDATES_FAILED: Final = "AllCandidatesFailed"
JUDGE_FAILED: Final = "JudgeFailed"
SCORE_DECIMALS: Final = 6
"""Scores are compared at this precision, so float noise never breaks a tie."""


@dataclass(frozen=True)
class Pick:
    """Each candidate's score (None: not judged) and the index of the winner."""

    scores: list[float | None]
    winner: int


def pick(
    scores: Sequence[Sequence[float] | None],
    weights: Sequence[float],
    cost_penalty: float,
    tokens: Sequence[int],
) -> Pick:
    """The winner among the judged candidates (``scores`` not None; at least one)."""
    totals = [
        None
        if row is None
        else round(
            sum(w * s for w, s in zip(weights, row, strict=True)) - cost_penalty * used / 1000,
            SCORE_DECIMALS,
        )
        for row, used in zip(scores, tokens, strict=True)
    ]
    judged = [(total, -index) for index, total in enumerate(totals) if total is not None]
    return Pick(totals, -max(judged)[1])


def agents_of(spec: TaskSpec) -> list[str | None]:
    """The Agent of each candidate, in order (None: the task's selector chooses)."""
    assert spec.candidates is not None
    if spec.candidates.agents:
        return list(spec.candidates.agents)
    return [spec.agent] * (spec.candidates.count or 0)


def started(previous: TaskStatus, spec: TaskSpec, now: datetime) -> TaskStatus:
    """The parent once ready: Running, its candidates recorded."""
    entries = [
        CandidateStatus(unit=key, agent=agent)
        for key, agent in zip(candidate_keys(spec), agents_of(spec), strict=True)
    ]
    return previous.model_copy(
        update={
            "phase": TaskPhase.RUNNING,
            "started_at": now,
            "candidates": entries,
            "message": f"{len(entries)} candidates running",
        }
    )


def judged(units: Mapping[str, TaskStatus]) -> tuple[str, ...] | None:
    """The candidates a judge scores: the ones that succeeded, once every one has finished;
    None while any runs."""
    if any(task.phase not in FINISHED for task in units.values()):
        return None
    return tuple(key for key, task in units.items() if task.phase == TaskPhase.SUCCEEDED)


def needs_judge(judged: tuple[str, ...]) -> bool:
    """Whether a judge runs on the candidates that succeeded: only if there is a choice."""
    return len(judged) > 1


def summary(
    spec: TaskSpec,
    parent: TaskStatus,
    units: Mapping[str, TaskStatus],
    judge: TaskStatus | None,
    now: datetime,
) -> TaskStatus:
    """The parent's status from its candidates' and its judge's."""
    if parent.phase in FINISHED or parent.candidates is None:
        return parent
    chosen = judged(units)
    if chosen is None:
        done = sum(1 for task in units.values() if task.phase in FINISHED)
        message = f"{done} of {len(units)} candidates finished"
        return parent.model_copy(update={"message": message})
    if not chosen:
        first = next(iter(units))
        why = f"{suffix_of(first)}: {units[first].message or 'no message'}"
        message = f"all {len(units)} candidates failed; {why}"
        return failed_for_good(parent, ALL_CANDIDATES_FAILED, message, now)
    if not needs_judge(chosen):
        [key] = chosen
        message = (
            f"{suffix_of(key)} won unjudged: the only one of {len(units)} candidates that succeeded"
        )
        return _won(parent, parent.candidates, key, units[key], message, now)
    if judge is None or judge.phase not in FINISHED:
        message = f"judging {len(chosen)} of {len(units)} candidates"
        return parent.model_copy(update={"message": message})
    if judge.phase != TaskPhase.SUCCEEDED:
        message = f"the judge {judge.phase.value.lower()}: {judge.message or 'no message'}"
        return failed_for_good(parent, JUDGE_FAILED, message, now)
    return _decided(spec, parent, units, chosen, judge, now)


def _decided(
    spec: TaskSpec,
    parent: TaskStatus,
    units: Mapping[str, TaskStatus],
    chosen: tuple[str, ...],
    judge: TaskStatus,
    now: datetime,
) -> TaskStatus:
    assert spec.candidates is not None and parent.candidates is not None
    criteria = spec.candidates.judge.criteria
    reported = judge.scores or {}
    rows = [reported.get(suffix_of(key)) if key in chosen else None for key in units]
    for key, row in zip(units, rows, strict=True):
        if key in chosen and (row is None or len(row) != len(criteria)):
            message = (
                f"the judge reported no scores for {suffix_of(key)} on the {len(criteria)} "
                "criteria (its pod left no report, or a malformed one)"
            )
            return failed_for_good(parent, JUDGE_FAILED, message, now)
    tokens = [task.usage.total_tokens if task.usage else 0 for task in units.values()]
    result = pick(rows, [c.weight for c in criteria], spec.candidates.judge.cost_penalty, tokens)
    entries = [
        entry.model_copy(update={"tokens": used, "scores": row, "score": score})
        for entry, used, row, score in zip(
            parent.candidates, tokens, rows, result.scores, strict=True
        )
    ]
    key = entries[result.winner].unit
    message = (
        f"{suffix_of(key)} won with score {result.scores[result.winner]:g} "
        f"({len(chosen)} of {len(units)} candidates judged)"
    )
    return _won(parent, entries, key, units[key], message, now)


def _won(
    parent: TaskStatus,
    entries: list[CandidateStatus],
    key: str,
    winner: TaskStatus,
    message: str,
    now: datetime,
) -> TaskStatus:
    """The parent Succeeded, its output the winner's."""
    return parent.model_copy(
        update={
            "phase": TaskPhase.SUCCEEDED,
            "finished_at": now,
            "message": message,
            "candidates": entries,
            "result_of": key,
            "model": winner.model,
            "output": winner.output,
            "preview": winner.preview,
            "fields": winner.fields,
            "counts": winner.counts,
        }
    )
