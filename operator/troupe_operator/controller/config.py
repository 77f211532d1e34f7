"""How an operator installation is set up, read once from its environment.

The Helm chart sets these variables; tests build the dataclass directly. A
value that does not parse is refused at start-up with the variable's name,
never replaced by a silent default.
"""

from __future__ import annotations

import ipaddress
import os
import shlex
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

MAX_RESYNC_SECONDS: Final = 300.0
"""The longest a live run goes without being looked at, whatever is configured."""


class ConfigError(ValueError):
    """A setting that cannot be used, with the variable that holds it."""


class UntenantedNamespaces(StrEnum):
    """What becomes of Workflows and Agents in a namespace no Tenant owns."""

    REFUSE = "Refuse"
    """Not started (a multi-tenant install: outside a Tenant nothing is counted or isolated)."""
    ALLOW = "Allow"
    """Run as anywhere else (a single-team cluster, which has no Tenants at all)."""


@dataclass(frozen=True)
class OperatorConfig:
    """Settings of one operator installation."""

    agent_image: str = "ghcr.io/troupe-dev/troupe-agent:0.1.0"
    """Image of task pods when an Agent names none."""

    task_command: tuple[str, ...] = ("troupe-agent",)
    """Command of the task container; the agent image's entry point."""

    resync_seconds: float = 30.0
    """How often a live run is looked at (its Jobs listed) even without an event."""

    workers: int = 16
    """Runs reconciled at once."""

    api_timeout_seconds: float = 15.0
    """Limit on every API call the controller makes."""

    pod_check_seconds: float = 10.0
    """How long a task's pod may take to start before the controller asks why it does not run."""

    task_events: bool = False
    """Post an Event when each attempt starts, besides the one for how each task ended."""

    reporting_instance: str = "troupe-operator"
    """This operator process, as Events name it (the pod's name in a cluster)."""

    api_server_cidr: str = "0.0.0.0/0"
    """Where task and agent pods of a Tenant may reach the Kubernetes API (their
    NetworkPolicy). Set it to your API server's address: a NetworkPolicy sees the
    endpoint's address, not the ``kubernetes`` Service's."""

    api_server_ports: tuple[int, ...] = (443, 6443)
    """The ports of the Kubernetes API, for the same NetworkPolicy."""

    untenanted_namespaces: UntenantedNamespaces = UntenantedNamespaces.REFUSE
    """Whether a namespace must belong to a Tenant for its Workflows to start and its Agents
    to serve. Refuse by default: on a shared cluster a forgotten Tenant should be a clear
    condition, not work that escapes every quota and budget."""

    cache_max_entries: int = 200
    """Most cache entries (memoized outputs) kept per namespace; the oldest go first."""

    cache_retention_seconds: float = 7 * 86_400.0
    """Age beyond which a cache entry is deleted (7 days), whatever a task's maxAge."""

    cache_gc_seconds: float = 300.0
    """How often the cache entries of every namespace are collected."""

    def __post_init__(self) -> None:
        if self.resync_seconds > MAX_RESYNC_SECONDS:
            object.__setattr__(self, "resync_seconds", MAX_RESYNC_SECONDS)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> OperatorConfig:
        defaults = cls()

        def number(variable: str, default: float, minimum: float) -> float:
            text = environ.get(variable)
            if text is None:
                return default
            try:
                value = float(text)
            except ValueError:
                raise ConfigError(f"{variable}={text!r} is not a number") from None
            if value < minimum:
                raise ConfigError(f"{variable}={text!r} is below its minimum {minimum:g}")
            return value

        task_events = environ.get("TROUPE_TASK_EVENTS", "outcomes")
        if task_events not in ("outcomes", "all"):
            raise ConfigError(f"TROUPE_TASK_EVENTS={task_events!r} is not 'outcomes' or 'all'")
        untenanted = environ.get("TROUPE_UNTENANTED_NAMESPACES", defaults.untenanted_namespaces)
        if untenanted not in tuple(UntenantedNamespaces):
            raise ConfigError(
                f"TROUPE_UNTENANTED_NAMESPACES={untenanted!r} is not 'Refuse' or 'Allow'"
            )
        return cls(
            untenanted_namespaces=UntenantedNamespaces(untenanted),
            api_server_cidr=_cidr(environ.get("TROUPE_API_SERVER_CIDR", defaults.api_server_cidr)),
            api_server_ports=_ports(
                environ.get("TROUPE_API_SERVER_PORTS"), defaults.api_server_ports
            ),
            agent_image=environ.get("TROUPE_AGENT_IMAGE", defaults.agent_image),
            task_command=tuple(
                shlex.split(environ.get("TROUPE_TASK_COMMAND", "")) or defaults.task_command
            ),
            resync_seconds=number("TROUPE_RESYNC_SECONDS", defaults.resync_seconds, 0.1),
            workers=int(number("TROUPE_WORKERS", defaults.workers, 1)),
            api_timeout_seconds=number(
                "TROUPE_API_TIMEOUT_SECONDS", defaults.api_timeout_seconds, 0.1
            ),
            pod_check_seconds=number("TROUPE_POD_CHECK_SECONDS", defaults.pod_check_seconds, 0),
            task_events=task_events == "all",
            cache_max_entries=int(
                number("TROUPE_CACHE_MAX_ENTRIES", defaults.cache_max_entries, 0)
            ),
            cache_retention_seconds=number(
                "TROUPE_CACHE_RETENTION_SECONDS", defaults.cache_retention_seconds, 60
            ),
            cache_gc_seconds=number("TROUPE_CACHE_GC_SECONDS", defaults.cache_gc_seconds, 1),
            reporting_instance=environ.get("POD_NAME") or socket.gethostname(),
        )


def _cidr(text: str) -> str:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ConfigError(f"TROUPE_API_SERVER_CIDR={text!r} is not a CIDR") from None
    return text


def _ports(text: str | None, default: tuple[int, ...]) -> tuple[int, ...]:
    if text is None:
        return default
    try:
        ports = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        ports = ()
    if not ports or not all(1 <= port <= 65_535 for port in ports):
        raise ConfigError(
            f"TROUPE_API_SERVER_PORTS={text!r} is not a comma-separated list of ports"
        )
    return ports
