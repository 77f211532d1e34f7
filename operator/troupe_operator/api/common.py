"""Shapes shared by every Troupe kind: the wire conventions, names, conditions, usage, calls.

Kubernetes speaks camelCase and rejects names that are not DNS-1123; these
types encode both once so the kinds only declare their own fields.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Final

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema
from pydantic.alias_generators import to_camel

GROUP: Final = "troupe.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"

DNS_LABEL_PATTERN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN_PATTERN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
QUANTITY_PATTERN: Final = (
    r"^\+?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|"
    r"([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)

DnsLabel = Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL_PATTERN)]
"""A name that may also serve as a label value and a part of child object names."""

DnsSubdomain = Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)]
"""A name of an object that Troupe only refers to (a Secret, for instance)."""


def _check_quantity(value: int | str) -> int | str:
    if isinstance(value, int) and value < 0:
        raise ValueError(f"{value} is negative; a quantity is at least 0")
    if isinstance(value, str) and not re.fullmatch(QUANTITY_PATTERN, value):
        raise ValueError(f"{value!r} is not a quantity such as 2, 500m or 4Gi")
    return value


Quantity = Annotated[
    int | str,
    Field(union_mode="left_to_right"),
    AfterValidator(_check_quantity),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "minimum": 0,
            "pattern": QUANTITY_PATTERN,
            "x-kubernetes-int-or-string": True,
        }
    ),
]
"""A Kubernetes resource quantity such as ``2``, ``500m`` or ``4Gi``; never negative, as
no request, limit or quota may be."""


def _check_cidr(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(f"{value!r} is not a CIDR such as 10.0.0.0/8") from None
    return value


Cidr = Annotated[
    str,
    AfterValidator(_check_cidr),
    WithJsonSchema({"type": "string", "format": "cidr"}),
]
"""An IPv4 or IPv6 network, as the API server's ``cidr`` format accepts it (host bits may
be set, as in ``10.0.0.1/8``)."""

Port = Annotated[int, Field(ge=1, le=65_535)]
"""A TCP or UDP port number."""


class ApiModel(BaseModel):
    """A part of a Troupe object: camelCase on the wire, unknown fields refused."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_enum_values=False,
        validate_default=True,
    )

    def to_wire(self) -> dict[str, Any]:
        """The object as it is stored in Kubernetes: camelCase keys, no unset optionals."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(ApiModel):
    """One observation of an object's state, as Kubernetes API conventions define it."""

    type: str = Field(description="The aspect observed, e.g. Ready, Succeeded or Failed.")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(
        default="",
        pattern=r"^([A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?)?$",
        description="A CamelCase word a program can switch on.",
    )
    message: str = Field(default="", description="What a person needs to know, in a sentence.")
    last_transition_time: datetime | None = Field(
        default=None, description="When status last changed value."
    )
    observed_generation: int | None = Field(
        default=None, ge=0, description="The metadata.generation this condition was computed from."
    )


class TokenUsage(ApiModel):
    """LLM tokens counted from the provider's replies."""

    input_tokens: int = Field(default=0, ge=0, description="Prompt tokens sent to the model.")
    output_tokens: int = Field(default=0, ge=0, description="Completion tokens the model returned.")
    total_tokens: int = Field(default=0, ge=0, description="Input plus output tokens.")

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            total_tokens=self.total_tokens + other.total_tokens,
        )


CALL_STATUSES_KEPT: Final = 8
"""The most statuses a count of failed model calls keeps apart; later ones count as ``other``."""
OTHER_CALL_STATUS: Final = "other"
CALL_STATUS_PATTERN: Final = r"[1-5][0-9][0-9]|timeout|connection|malformed|error|other"
"""A failed call's status: its HTTP code, or why no code came (the agent runtime's labels)."""


def call_status(status: str) -> str:
    """``status`` if it is one a count keeps, else ``error``."""
    return status if re.fullmatch(CALL_STATUS_PATTERN, status) else "error"


def count_failures(counts: dict[str, int], status: str, calls: int = 1) -> None:
    """Add ``calls`` failed with ``status`` to ``counts``, keeping its statuses bounded.

    A status already counted keeps its count; a new one is counted apart while
    there is room, else under ``other``. Counts only grow, never move between
    statuses, so a reader that counts the increase of each counts each call once.
    """
    room = status in counts or len(counts) < CALL_STATUSES_KEPT - 1
    key = status if room else OTHER_CALL_STATUS
    counts[key] = counts.get(key, 0) + calls


def _check_failures(counts: dict[str, int]) -> dict[str, int]:
    for status in counts:
        if not re.fullmatch(CALL_STATUS_PATTERN, status):
            raise ValueError(f"{status!r} is not a call status (an HTTP code, timeout, ...)")
    return counts


FailedCalls = Annotated[
    dict[str, Annotated[int, Field(ge=0)]],
    Field(max_length=CALL_STATUSES_KEPT),
    AfterValidator(_check_failures),
]
"""Failed model calls by status: an HTTP code (``429``, ``500``), ``timeout``, ``connection``,
``malformed``, ``error``, or ``other`` once ``CALL_STATUSES_KEPT`` statuses are counted."""


class ModelCalls(ApiModel):
    """Model calls a task's attempts made: all of them, and the failed ones by status."""

    total: int = Field(
        default=0, ge=0, description="Calls made, failed ones included (each retry is a call)."
    )
    failed: FailedCalls = Field(
        default_factory=dict,
        description=(
            "Failed calls by status: an HTTP code such as 429, or timeout, connection, "
            "malformed, error; other once 8 statuses are counted."
        ),
    )

    def __add__(self, other: ModelCalls) -> ModelCalls:
        failed = dict(self.failed)
        for status, calls in other.failed.items():
            count_failures(failed, status, calls)
        return ModelCalls(total=self.total + other.total, failed=failed)
