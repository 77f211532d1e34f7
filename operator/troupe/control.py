"""Stop, suspend, resume and retry a run: the requests of ``troupe_operator.api.run_control``,
written only when the run's phase allows them.

Each request reads the Workflow, checks its phase, and writes the annotation patch with the
``resourceVersion`` it read as a precondition, so that a run which changed between the two
(it finished meanwhile) is read and judged again instead of being written on a stale
verdict; after ``CONFLICT_ATTEMPTS`` such changes it gives up with Conflict. What the
operator does with a request is its own business: this only asks.

Refused, with WrongPhase and one line: retrying a run that has not Failed, stopping or
suspending a finished one, resuming one that is not suspended.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final

from troupe.errors import Conflict, InvalidRequest, WrongPhase
from troupe.kube import Body, Kube
from troupe.runs import FINISHED, annotations_of, name, phase
from troupe_operator.api.run_control import (
    Patch,
    is_suspended,
    new_retry_nonce,
    resume_patch,
    retry_patch,
    stop_patch,
    suspend_patch,
)

CONFLICT_ATTEMPTS: Final = 5

Check = Callable[[Body], None]


def _not_finished(verb: str) -> Check:
    def check(workflow: Body) -> None:
        if phase(workflow) in FINISHED:
            raise WrongPhase(f"cannot {verb} workflow {name(workflow)!r}: it has {phase(workflow)}")

    return check


def _failed(workflow: Body) -> None:
    if phase(workflow) != "Failed":
        raise WrongPhase(
            f"cannot retry workflow {name(workflow)!r}: it is {phase(workflow)}, "
            "and only a Failed run is retried"
        )


def _suspended(workflow: Body) -> None:
    if not is_suspended(annotations_of(workflow)):
        raise WrongPhase(f"cannot resume workflow {name(workflow)!r}: it is not suspended")


def _request(kube: Kube, path: str, what: str, check: Check, patch: Patch) -> Body:
    for _ in range(CONFLICT_ATTEMPTS):
        workflow = kube.get(path, what)
        check(workflow)
        version = (workflow.get("metadata") or {}).get("resourceVersion")
        conditional = {**patch, "metadata": {**patch["metadata"], "resourceVersion": version}}
        try:
            return kube.merge_patch(path, conditional, what)
        except Conflict:
            continue
    raise Conflict(f"{what} changed {CONFLICT_ATTEMPTS} times while being written; try again")


def stop(kube: Kube, path: str, what: str, message: str) -> Body:
    try:
        patch = stop_patch(message)
    except ValueError as refused:
        raise InvalidRequest(str(refused)) from None
    return _request(kube, path, what, _not_finished("stop"), patch)


def suspend(kube: Kube, path: str, what: str) -> Body:
    return _request(kube, path, what, _not_finished("suspend"), suspend_patch())


def resume(kube: Kube, path: str, what: str) -> Body:
    return _request(kube, path, what, _suspended, resume_patch())


def retry(kube: Kube, path: str, what: str, now: datetime | None = None) -> Body:
    nonce = new_retry_nonce(now or datetime.now(UTC))
    return _request(kube, path, what, _failed, retry_patch(nonce))
