"""The benchmark's counting emulator counts every request by client family, verb, resource."""

from __future__ import annotations

import importlib
import pathlib

import httpx
import pytest

BENCH = pathlib.Path(__file__).resolve().parents[2] / "bench"


def test_requests_are_counted_by_client_verb_and_resource(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCH))  # bench/ holds scripts, not a package
    counting = importlib.import_module("counting_cluster")
    key = counting.RequestKey
    with counting.CountingCluster() as cluster:
        cluster.create_namespace("bench")
        configmaps = f"{cluster.url}/api/v1/namespaces/bench/configmaps"
        agents = {
            "troupe-operator": "troupe-operator/0.1",
            "kopf": "kopf/1.45",
            "bench": f"{counting.BENCH_AGENT_PREFIX}-kubelet",
            "client": "OpenAPI-Generator/37/python",
        }
        for agent in agents.values():
            httpx.get(configmaps, headers={"User-Agent": agent})
        watch = {"watch": "true", "timeoutSeconds": "0"}
        httpx.get(configmaps, params=watch, headers={"User-Agent": agents["kopf"]})
        status = f"{cluster.url}/api/v1/namespaces/bench/pods/missing/status"
        httpx.patch(status, json={}, headers={"User-Agent": agents["bench"]})
        counts = cluster.counts()
    assert counts == {
        key("troupe-operator", "GET", "configmaps"): 1,
        key("kopf", "GET", "configmaps"): 1,
        key("bench", "GET", "configmaps"): 1,
        key("client", "GET", "configmaps"): 1,
        key("kopf", "WATCH", "configmaps"): 1,
        key("bench", "PATCH", "pods/status"): 1,
    }
    assert key("bench", "PATCH", "pods/status").is_write
