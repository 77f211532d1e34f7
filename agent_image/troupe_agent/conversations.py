"""Team conversations checkpointed through the Kubernetes API, so a new supervisor resumes them.

One ``Conversation`` object per conversation id (named ``<agent>-<hash of the
id>``), written by the elected supervisor pod after every completed turn:
the request, each turn's member, instruction and (shortened) output, the
usage so far, and the answer once there is one. It is owned by the Agent (its
uid comes in ``TROUPE_AGENT_UID``), so deleting the Agent deletes its
conversations, and it expires ``TTL_SECONDS`` after its last write: an expired
one reads as absent, and the supervisor deletes expired ones
(:meth:`ConversationStore.sweep`).

Sizes are bounded so one object stays far below etcd's limit: at most
``MAX_TURNS`` turns, instructions cut to ``MAX_INSTRUCTION`` characters and
member outputs to ``MAX_OUTPUT`` (the cut is marked in the text, and it is
also what the supervisor model reads on later turns), the request and answer
to the Conversation schema's limits. Every write carries the
``resourceVersion`` read, so two invocations of one conversation at once
cannot both write: the second gets :class:`ConversationConflict`. Calls go
through :class:`~troupe_agent.kube_api.KubeCaller` (bounded, transient
failures retried). This module refuses to decide what a turn is; the loop
(``troupe_agent.team``) does.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Final

from kubernetes.client import ApiClient, CustomObjectsApi

from troupe_agent.kube_api import KubeApiError, KubeCaller
from troupe_agent.retry import Deadline, RetryPolicy
from troupe_operator.api import API_VERSION, GROUP, VERSION, TokenUsage

log = logging.getLogger(__name__)

PLURAL: Final = "conversations"
LABEL_AGENT: Final = "troupe.dev/agent"
TTL_SECONDS: Final = 3600
MAX_TURNS: Final = 50
MAX_INSTRUCTION: Final = 2048
MAX_OUTPUT: Final = 4096
MAX_PROMPT: Final = 32768
MAX_ANSWER: Final = 65536
SWEEP_LIMIT: Final = 100
"""Conversations looked at per sweep; the next sweep takes the rest."""
CALL_SECONDS: Final = 10.0
CALL_POLICY: Final = RetryPolicy(max_retries=3, base_delay=0.1, max_delay=2.0)


class ConversationConflict(Exception):
    """Someone else wrote the conversation since it was read (another invocation of it)."""


def shortened(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, the cut said in the text itself."""
    if len(text) <= limit:
        return text
    marker = f"\n[... {{}} more characters cut: limit {limit}]"
    keep = limit - len(marker.format(len(text)))
    return text[:keep] + marker.format(len(text) - keep)


@dataclass(frozen=True)
class Turn:
    """One completed delegation: the member, what it was asked, what it answered, its cost."""

    member: str
    instruction: str
    output: str
    usage: TokenUsage

    def to_wire(self) -> dict[str, Any]:
        return {
            "member": self.member,
            "instruction": self.instruction,
            "output": self.output,
            "usage": self.usage.to_wire(),
        }


@dataclass(frozen=True)
class Checkpoint:
    """A conversation as of its last completed turn."""

    conversation_id: str
    prompt: str
    turns: tuple[Turn, ...] = ()
    usage: TokenUsage = field(default_factory=TokenUsage)
    answer: str | None = None
    resource_version: str | None = None
    """The stored object's version; None until it is first written."""

    def with_turn(self, turn: Turn, cost: TokenUsage) -> Checkpoint:
        return replace(self, turns=(*self.turns, turn), usage=self.usage + cost)


def _label_value(agent: str) -> str:
    return agent if len(agent) <= 63 else hashlib.sha256(agent.encode()).hexdigest()[:16]


class ConversationStore:
    """The Conversations of one supervisor Agent, in its namespace."""

    def __init__(
        self,
        api_client: ApiClient,
        namespace: str,
        agent: str,
        agent_uid: str | None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._api = CustomObjectsApi(api_client)
        self._namespace = namespace
        self._agent = agent
        self._agent_uid = agent_uid
        self._clock = clock

    def name_of(self, conversation_id: str) -> str:
        digest = hashlib.sha256(conversation_id.encode()).hexdigest()[:16]
        return f"{self._agent[: 253 - len(digest) - 1]}-{digest}"

    def load(self, conversation_id: str) -> Checkpoint | None:
        """The conversation as checkpointed; None when there is none or it expired."""
        name = self.name_of(conversation_id)
        try:
            body = self._call(
                lambda timeout: self._api.get_namespaced_custom_object(
                    GROUP, VERSION, self._namespace, PLURAL, name, _request_timeout=timeout
                ),
                f"reading conversation {name}",
            )
        except KubeApiError as error:
            if error.status == 404:
                return None
            raise
        spec = body.get("spec") or {}
        if self._expired(spec) or spec.get("conversationId") != conversation_id:
            return None
        return Checkpoint(
            conversation_id=conversation_id,
            prompt=str(spec.get("prompt", "")),
            turns=tuple(
                Turn(
                    member=str(turn.get("member", "")),
                    instruction=str(turn.get("instruction", "")),
                    output=str(turn.get("output", "")),
                    usage=TokenUsage.model_validate(turn.get("usage") or {}),
                )
                for turn in spec.get("turns") or ()
            ),
            usage=TokenUsage.model_validate(spec.get("usage") or {}),
            answer=spec.get("answer"),
            resource_version=body["metadata"]["resourceVersion"],
        )

    def save(self, checkpoint: Checkpoint) -> Checkpoint:
        """Write the checkpoint (create, or replace the version read); the stored version."""
        body = self._body(checkpoint)
        name = body["metadata"]["name"]
        try:
            if checkpoint.resource_version is None:
                written = self._call(
                    lambda timeout: self._api.create_namespaced_custom_object(
                        GROUP, VERSION, self._namespace, PLURAL, body, _request_timeout=timeout
                    ),
                    f"creating conversation {name}",
                )
            else:
                written = self._call(
                    lambda timeout: self._api.replace_namespaced_custom_object(
                        GROUP,
                        VERSION,
                        self._namespace,
                        PLURAL,
                        name,
                        body,
                        _request_timeout=timeout,
                    ),
                    f"writing conversation {name}",
                )
        except KubeApiError as error:
            if error.status == 409:
                raise ConversationConflict(
                    f"conversation {checkpoint.conversation_id!r} was written by another"
                    " invocation since it was read; send it again to continue from there"
                ) from error
            raise
        return replace(checkpoint, resource_version=written["metadata"]["resourceVersion"])

    def sweep(self) -> int:
        """Delete up to ``SWEEP_LIMIT`` expired conversations of the Agent; how many went."""
        listed = self._call(
            lambda timeout: self._api.list_namespaced_custom_object(
                GROUP,
                VERSION,
                self._namespace,
                PLURAL,
                label_selector=f"{LABEL_AGENT}={_label_value(self._agent)}",
                limit=SWEEP_LIMIT,
                _request_timeout=timeout,
            ),
            "listing conversations",
        )
        deleted = 0
        for item in listed.get("items") or ():
            if not self._expired(item.get("spec") or {}):
                continue
            name = item["metadata"]["name"]
            try:
                self._call(partial(self._delete, name), f"deleting expired conversation {name}")
                deleted += 1
            except KubeApiError as error:
                if error.status != 404:
                    raise
        return deleted

    def _delete(self, name: str, timeout: float) -> object:
        return self._api.delete_namespaced_custom_object(
            GROUP, VERSION, self._namespace, PLURAL, name, _request_timeout=timeout
        )

    def _body(self, checkpoint: Checkpoint) -> dict[str, Any]:
        expires = self._clock() + timedelta(seconds=TTL_SECONDS)
        metadata: dict[str, Any] = {
            "name": self.name_of(checkpoint.conversation_id),
            "namespace": self._namespace,
            "labels": {LABEL_AGENT: _label_value(self._agent)},
        }
        if checkpoint.resource_version is not None:
            metadata["resourceVersion"] = checkpoint.resource_version
        if self._agent_uid:
            metadata["ownerReferences"] = [
                {
                    "apiVersion": API_VERSION,
                    "kind": "Agent",
                    "name": self._agent,
                    "uid": self._agent_uid,
                }
            ]
        spec: dict[str, Any] = {
            "agent": self._agent,
            "conversationId": checkpoint.conversation_id,
            "prompt": checkpoint.prompt,
            "turns": [turn.to_wire() for turn in checkpoint.turns],
            "usage": checkpoint.usage.to_wire(),
            "expiresAt": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        if checkpoint.answer is not None:
            spec["answer"] = checkpoint.answer
        return {
            "apiVersion": API_VERSION,
            "kind": "Conversation",
            "metadata": metadata,
            "spec": spec,
        }

    def _expired(self, spec: dict[str, Any]) -> bool:
        try:
            expires = datetime.fromisoformat(str(spec.get("expiresAt")).replace("Z", "+00:00"))
        except ValueError:
            return True
        return expires <= self._clock()

    @staticmethod
    def _call(request: Callable[[float], Any], what: str) -> dict[str, Any]:
        result: dict[str, Any] = KubeCaller(Deadline(CALL_SECONDS), policy=CALL_POLICY).call(
            request, what
        )
        return result
