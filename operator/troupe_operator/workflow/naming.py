"""Deterministic names and identity of the objects a Workflow run creates.

A restarted operator must find the Job of an attempt it already started
instead of starting a second one, so every child name is a pure function of
the Workflow (its name and uid), the task and the attempt. Names must not
collide across Workflows: ``a-b`` with task ``c`` and ``a`` with task ``b-c``
both read ``a-b-c``, and a Workflow deleted and created again under the same
name leaves children that garbage collection has not removed yet. So every
name carries a short hash of the Workflow's uid, as Argo's pod names carry a
hash. Names are DNS-1123 labels of at most 63 characters; a long one keeps a
readable prefix and a stable hash of what was cut.

An instance of an expanded task (``research.2``, see ``INSTANCE_SEPARATOR``) is named like
a task with the dot as a hyphen; as a task ``research-2`` would read the same, an
instance's names carry a hash of the uid *and* its key in place of the run's hash.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Final

from troupe_operator.api import API_VERSION, INSTANCE_SEPARATOR

MAX_NAME: Final = 63
HASH_CHARS: Final = 8

LABEL_WORKFLOW: Final = "troupe.dev/workflow"
LABEL_TASK: Final = "troupe.dev/task"
LABEL_ATTEMPT: Final = "troupe.dev/attempt"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
ATTEMPT_AGENT_ANNOTATION: Final = "troupe.dev/agent"
"""On an attempt's Job: the name of the Agent it runs on, in the Job's namespace (an
annotation: an Agent's name may be longer than a label value)."""
MANAGED_BY: Final = "troupe"


def short_digest(text: str) -> str:
    """A short, stable hash that keeps a shortened name unique (shared by every controller)."""
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_CHARS]


def _fit(base: str, suffix: str) -> str:
    """``base + suffix`` if it fits; otherwise a prefix of base, a hash of it, and suffix."""
    if len(base) + len(suffix) <= MAX_NAME:
        return base + suffix
    keep = MAX_NAME - len(suffix) - HASH_CHARS - 1
    return f"{base[:keep].rstrip('-')}-{short_digest(base)}{suffix}"


@dataclass(frozen=True)
class WorkflowRef:
    """One Workflow object (one run): the names of everything it owns derive from this."""

    namespace: str
    name: str
    uid: str

    @cached_property
    def run_hash(self) -> str:
        """Short hash of the uid: tells this run's children from any other's."""
        return short_digest(self.uid)

    def _task_hash(self, task: str) -> str:
        if INSTANCE_SEPARATOR not in task:
            return self.run_hash
        return short_digest(f"{self.uid}/{task}")

    def _task_base(self, task: str) -> str:
        return f"{self.name}-{task.replace(INSTANCE_SEPARATOR, '-')}"

    def job_name(self, task: str, attempt: int) -> str:
        """The Job of one attempt: ``<workflow>-<task>-<hash>-<attempt>``."""
        return _fit(self._task_base(task), f"-{self._task_hash(task)}-{attempt}")

    def output_config_map(self, task: str) -> str:
        """The ConfigMap holding a task's output (the newest attempt's)."""
        return _fit(self._task_base(task), f"-{self._task_hash(task)}-out")

    def spec_config_map(self) -> str:
        """The ConfigMap holding the spec the run started with; task pods mount it."""
        return _fit(self.name, f"-{self.run_hash}-spec")

    def task_identity(self) -> str:
        """The ServiceAccount (and its Role and RoleBinding) this run's task pods use."""
        return _fit(self.name, f"-{self.run_hash}-task")

    def labels(self) -> dict[str, str]:
        """Labels on every child; select a run's Jobs with the first one."""
        return {LABEL_WORKFLOW: self.name, LABEL_MANAGED_BY: MANAGED_BY}

    def attempt_labels(self, task: str, attempt: int) -> dict[str, str]:
        """Labels on the Job (and pods) of one attempt."""
        return {**self.labels(), LABEL_TASK: task, LABEL_ATTEMPT: str(attempt)}

    def task_labels(self, task: str) -> dict[str, str]:
        """Labels on a task's output ConfigMap."""
        return {**self.labels(), LABEL_TASK: task}

    def owner_reference(self, *, block_owner_deletion: bool) -> dict[str, Any]:
        """The ownerReference that makes a child go away with its Workflow.

        ``blockOwnerDeletion`` needs permission to update the Workflow's
        finalizers, which the operator has and task pods do not.
        """
        reference: dict[str, Any] = {
            "apiVersion": API_VERSION,
            "kind": "Workflow",
            "name": self.name,
            "uid": self.uid,
            "controller": True,
        }
        if block_owner_deletion:
            reference["blockOwnerDeletion"] = True
        return reference
