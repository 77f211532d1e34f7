"""A real OTLP receiver for tests: rotel's collector, reading back the spans it received.

PyPI's ``rotel`` ships the ``rotel-agent`` binary (a Rust OpenTelemetry
collector). It runs here in the foreground on loopback ports of its own,
receiving OTLP over HTTP and gRPC, exporting to nowhere (``--exporter
blackhole``) and printing every span it receives (``--debug-log traces
--debug-log-verbosity detailed``) to its output, which goes to a file this
module parses: the resource's attributes and the instrumentation scope's name
and schema URL, then per span its trace id, parent id, id, name, kind, status
and attributes. Attribute values are kept as rotel
prints them, unwrapped from their type (``Str(chat)`` → ``chat``, ``Int(7)`` →
``7``). It refuses to fake anything: a span is only what the collector printed.
"""

from __future__ import annotations

import re
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

import rotel

from tests.support.loopback import free_port
from tests.support.restarting import terminate
from tests.support.waiting import wait_for

BINARY = Path(rotel.__file__).parent / "rotel-agent"
ATTRIBUTE = re.compile(r"^\s+-> ([^:]+): (\w+)\((.*)\)$")
FIELD = re.compile(r"^\s*([A-Za-z][A-Za-z ]*?)\s*: ?(.*)$")


@dataclass
class ReceivedSpan:
    """One span as the collector printed it."""

    trace_id: str = ""
    parent_id: str = ""
    span_id: str = ""
    name: str = ""
    kind: str = ""
    status: str = ""
    attributes: dict[str, str] = field(default_factory=dict)
    resource: dict[str, str] = field(default_factory=dict)
    scope: tuple[str, str] = ("", "")
    """The instrumentation scope's name and schema URL."""

    @property
    def service(self) -> str:
        return self.resource.get("service.name", "")


def parse(log: str) -> list[ReceivedSpan]:
    """The spans in rotel's detailed debug output."""
    spans: list[ReceivedSpan] = []
    resource: dict[str, str] = {}
    target: dict[str, str] = resource
    span: ReceivedSpan | None = None
    schema_url = ""
    scope = ("", "")
    fields = {"Trace ID": "trace_id", "Parent ID": "parent_id", "ID": "span_id"}
    fields |= {"Name": "name", "Kind": "kind", "Status code": "status"}
    for line in log.splitlines():
        if line.startswith("ResourceSpans #"):
            resource, span = {}, None
            target = resource
        elif line.startswith("ScopeSpans SchemaURL:"):
            schema_url = line.partition(":")[2].strip()
        elif line.startswith("InstrumentationScope "):
            scope = (line.split()[1], schema_url)
        elif line.startswith("Span #"):
            span = ReceivedSpan(resource=resource, scope=scope)
            spans.append(span)
        elif line.startswith("Attributes:") and span is not None:
            target = span.attributes
        elif (attribute := ATTRIBUTE.match(line)) is not None:
            target[attribute.group(1)] = attribute.group(3)
        elif span is not None and (found := FIELD.match(line)) and found.group(1) in fields:
            setattr(span, fields[found.group(1)], found.group(2).strip())
    return spans


class OtlpReceiver:
    """``rotel-agent`` on loopback while the block runs; ``endpoint`` is its OTLP/HTTP URL."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.http_port = free_port()
        self.grpc_port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        """What ``OTEL_EXPORTER_OTLP_ENDPOINT`` takes (the SDK appends ``/v1/traces``)."""
        return f"http://127.0.0.1:{self.http_port}"

    def spans(self) -> list[ReceivedSpan]:
        return parse(self.log.read_text(errors="replace")) if self.log.exists() else []

    def __enter__(self) -> Self:
        command = [
            str(BINARY),
            "start",
            "--exporter",
            "blackhole",
            "--otlp-http-endpoint",
            f"127.0.0.1:{self.http_port}",
            "--otlp-grpc-endpoint",
            f"127.0.0.1:{self.grpc_port}",
            "--debug-log",
            "traces",
            "--debug-log-verbosity",
            "detailed",
            "--batch-timeout",
            "50ms",
            "--pid-file",
            str(self.log.with_suffix(".pid")),
            "--log-file",
            str(self.log.with_suffix(".agent.log")),
        ]
        with self.log.open("wb") as output:
            self._process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        wait_for(self._listening, timeout=30, what=f"rotel-agent on port {self.http_port}")
        return self

    def _listening(self) -> bool:
        assert self._process is not None
        if self._process.poll() is not None:
            raise RuntimeError(f"rotel-agent exited: {self.log.read_text(errors='replace')}")
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", self.http_port)) == 0

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._process is not None:
            terminate(self._process, grace=10)
