"""Deterministic names and identity of the objects a Workflow run creates.

A restarted operator must find the Job of an attempt it already started
instead of starting a second one, so every child name is a pure function of
(workflow, task, attempt). Names are DNS-1123 labels of at most 63
characters; a long name keeps a readable prefix and ends with a stable hash.
"""

from __future__ import annotations

import hashlib
from typing import Any, Final

from troupe_operator.api import API_VERSION

MAX_NAME: Final = 63
HASH_CHARS: Final = 8

LABEL_WORKFLOW: Final = "troupe.dev/workflow"
LABEL_TASK: Final = "troupe.dev/task"
LABEL_ATTEMPT: Final = "troupe.dev/attempt"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"

INPUT_SUFFIX: Final = "-in"
OUTPUT_SUFFIX: Final = "-out"
SPEC_SUFFIX: Final = "-spec"


def _fit(base: str, suffix: str = "") -> str:
    """``base + suffix`` if it fits; otherwise a prefix of base, a hash of it, and suffix."""
    if len(base) + len(suffix) <= MAX_NAME:
        return base + suffix
    digest = hashlib.sha256(base.encode()).hexdigest()[:HASH_CHARS]
    keep = MAX_NAME - len(suffix) - HASH_CHARS - 1
    return f"{base[:keep].rstrip('-')}-{digest}{suffix}"


def _attempt_base(workflow: str, task: str, attempt: int) -> str:
    return f"{workflow}-{task}-{attempt}"


def job_name(workflow: str, task: str, attempt: int) -> str:
    """The Job of one attempt: ``<workflow>-<task>-<attempt>``, shortened to fit."""
    return _fit(_attempt_base(workflow, task, attempt))


def input_config_map_name(workflow: str, task: str, attempt: int) -> str:
    """The ConfigMap holding an attempt's TaskInput: the Job's name plus ``-in``."""
    return _fit(_attempt_base(workflow, task, attempt), INPUT_SUFFIX)


def output_config_map_name(workflow: str, task: str, attempt: int) -> str:
    """The ConfigMap an attempt writes its output to: the Job's name plus ``-out``."""
    return _fit(_attempt_base(workflow, task, attempt), OUTPUT_SUFFIX)


def spec_config_map_name(workflow: str) -> str:
    """The ConfigMap holding the spec a run started with."""
    return _fit(workflow, SPEC_SUFFIX)


def workflow_labels(workflow: str) -> dict[str, str]:
    """Labels on every child of a Workflow; select its Jobs with the first one."""
    return {LABEL_WORKFLOW: workflow, LABEL_MANAGED_BY: "troupe"}


def attempt_labels(workflow: str, task: str, attempt: int) -> dict[str, str]:
    """Labels on the Job and ConfigMaps of one attempt."""
    return {**workflow_labels(workflow), LABEL_TASK: task, LABEL_ATTEMPT: str(attempt)}


def owner_reference(workflow: str, uid: str) -> dict[str, Any]:
    """The ownerReference that makes a child go away with its Workflow."""
    return {
        "apiVersion": API_VERSION,
        "kind": "Workflow",
        "name": workflow,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }
