"""Kubernetes-style conditions on a Workflow, with stable transition times.

API conventions say ``lastTransitionTime`` moves only when ``status`` flips;
reason and message may change freely. Getting that right once here keeps
``kubectl wait --for=condition=Succeeded`` and dashboards honest.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from troupe_operator.api import Condition, ConditionStatus


def set_condition(
    conditions: Sequence[Condition],
    type_: str,
    holds: bool,
    reason: str,
    message: str,
    now: datetime,
    generation: int,
) -> list[Condition]:
    """``conditions`` with ``type_`` set; its transition time kept unless its status flips."""
    previous = find_condition(conditions, type_)
    updated = next_condition(previous, type_, holds, reason, message, now, generation)
    return [*conditions, updated] if previous is None else _replace(conditions, updated)


def next_condition(
    previous: Condition | None,
    type_: str,
    holds: bool,
    reason: str,
    message: str,
    now: datetime,
    generation: int,
) -> Condition:
    """Condition ``type_`` as it is now; ``previous``'s transition time unless its status flips."""
    status = ConditionStatus.TRUE if holds else ConditionStatus.FALSE
    since = now
    if previous is not None and previous.status == status and previous.last_transition_time:
        since = previous.last_transition_time
    return Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=since,
        observed_generation=generation,
    )


def _replace(conditions: Sequence[Condition], updated: Condition) -> list[Condition]:
    return [updated if condition.type == updated.type else condition for condition in conditions]


def remove_condition(conditions: Sequence[Condition], type_: str) -> list[Condition]:
    return [condition for condition in conditions if condition.type != type_]


def find_condition(conditions: Sequence[Condition], type_: str) -> Condition | None:
    return next((condition for condition in conditions if condition.type == type_), None)
