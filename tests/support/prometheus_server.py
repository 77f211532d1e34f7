"""A real Prometheus server (Debian's ``prometheus``) on loopback, and its HTTP API.

It scrapes what the test names and evaluates rule files as it would in a cluster; the
scrape jobs are made from the chart's ServiceMonitor and PodMonitor the way the Prometheus
Operator makes them (job label, ``honor_labels``, path, the target's ``namespace``), so a
label lost or renamed between the operator and an alert shows up here. Data lives in a
temporary directory; the server is stopped when the block ends.

Refuses: service discovery (targets are static: the emulator has no pod IPs to find).
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.support.loopback import free_port
from tests.support.restarting import terminate
from tests.support.waiting import wait_for

INTERVAL = "1s"
Object = dict[str, Any]


@dataclass(frozen=True)
class Target:
    """A process serving /metrics on loopback, standing for a pod in ``namespace``."""

    address: str
    namespace: str
    pod: str


def operator_job(objects: list[Object], target: Target) -> Object:
    """The scrape job the Prometheus Operator makes of the chart's ServiceMonitor."""
    (monitor,) = [o for o in objects if o["kind"] == "ServiceMonitor"]
    selector = monitor["spec"]["selector"]["matchLabels"]
    (service,) = [
        o
        for o in objects
        if o["kind"] == "Service" and selector.items() <= o["metadata"]["labels"].items()
    ]
    (endpoint,) = monitor["spec"]["endpoints"]
    name = service["metadata"]["name"]
    labels = {"namespace": target.namespace, "service": name, "endpoint": endpoint["port"]}
    return _job(name, endpoint, target, labels)


def agents_job(objects: list[Object], target: Target) -> Object:
    """The scrape job the Prometheus Operator makes of the chart's PodMonitor."""
    (monitor,) = [o for o in objects if o["kind"] == "PodMonitor"]
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    name = f"{monitor['metadata']['namespace']}/{monitor['metadata']['name']}"
    return _job(name, endpoint, target, {"namespace": target.namespace})


def _job(name: str, endpoint: Mapping[str, Any], target: Target, labels: Object) -> Object:
    return {
        "job_name": name,
        "honor_labels": bool(endpoint.get("honorLabels", False)),
        "metrics_path": endpoint.get("path", "/metrics"),
        "static_configs": [
            {"targets": [target.address], "labels": {**labels, "pod": target.pod}},
        ],
    }


class PrometheusError(AssertionError):
    """The server answered a query with an error."""


@dataclass
class Prometheus:
    url: str
    client: httpx.Client

    def _get(self, path: str, **params: Any) -> Any:
        body = self.client.get(f"{self.url}{path}", params=params, timeout=10).json()
        if body["status"] != "success":
            raise PrometheusError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[Object]:
        """An instant query's result (a vector; a scalar comes back as one sample)."""
        data = self._get("/api/v1/query", query=expr)
        result: list[Object] = data["result"]
        return result if data["resultType"] == "vector" else [{"value": result}]

    def query_range(self, expr: str, start: float, end: float, step: str) -> list[Object]:
        result: list[Object] = self._get(
            "/api/v1/query_range", query=expr, start=start, end=end, step=step
        )["result"]
        return result

    def rules(self) -> list[Object]:
        return [rule for group in self._get("/api/v1/rules")["groups"] for rule in group["rules"]]

    def alerts(self) -> list[Object]:
        found: list[Object] = self._get("/api/v1/alerts")["alerts"]
        return found

    def ready(self) -> bool:
        try:
            return self.client.get(f"{self.url}/-/ready", timeout=2).status_code == 200
        except httpx.TransportError:
            return False


@contextlib.contextmanager
def prometheus(
    binary: Path, directory: Path, jobs: list[Object], rule_files: list[Path]
) -> Iterator[Prometheus]:
    """The server scraping ``jobs`` every second and evaluating ``rule_files``, once ready."""
    config = {
        "global": {
            "scrape_interval": INTERVAL,
            "scrape_timeout": INTERVAL,
            "evaluation_interval": INTERVAL,
        },
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": jobs,
    }
    config_file = directory / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    address = f"127.0.0.1:{free_port()}"
    log = directory / "prometheus.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                str(binary),
                f"--config.file={config_file}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address={address}",
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        with httpx.Client() as client:
            server = Prometheus(f"http://{address}", client)

            def ready() -> bool:
                if process.poll() is not None:
                    raise AssertionError(
                        f"prometheus exited {process.returncode}:\n{log.read_text()}"
                    )
                return server.ready()

            wait_for(ready, timeout=60, interval=0.1, what="Prometheus to be ready")
            yield server
    finally:
        terminate(process)
