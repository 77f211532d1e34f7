"""Run a kopf operator in-process, in its own thread, against the emulator.

Why not `kopf.testing.KopfRunner`: it returns as soon as its thread starts, before the
operator has logged in, listed and started watching, so every test would have to guess when
the operator is ready; this runner waits on kopf's own `ready_flag`. And KopfRunner drives
kopf through click's `CliRunner`, which replaces `sys.stdout` and `sys.stderr` of the whole
process while the operator runs, under pytest's own capture.

The caller builds the `kopf.OperatorRegistry` (a trivial one in harness tests, the real
Troupe operator's later), so the same helper serves every operator test. A login handler
returning `kopf.ConnectionInfo(server=<emulator URL>)` is added to that registry (once per
URL) with the highest priority, so it wins over any login handler the operator has and a
kubeconfig in the environment cannot redirect the operator elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from collections.abc import Collection, Iterator

import kopf


def test_settings() -> kopf.OperatorSettings:
    """kopf settings suited to the emulator: quick reconnects, log lines posted as Events."""
    settings = kopf.OperatorSettings()
    settings.watching.reconnect_backoff = 0.1
    settings.watching.server_timeout = 300
    settings.posting.enabled = True
    settings.posting.loggers = True  # handler log lines become Events, as `kubectl describe` shows
    return settings


def _login_to(registry: kopf.OperatorRegistry, api_url: str) -> None:
    handler_id = f"login-to-emulator-at-{api_url}"
    if any(handler.id == handler_id for handler in registry._activities.get_all_handlers()):
        return

    @kopf.on.login(registry=registry, id=handler_id)
    def login_to_emulator(**_: object) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(
            server=api_url, default_namespace="default", priority=sys.maxsize
        )


@contextlib.contextmanager
def running_operator(
    registry: kopf.OperatorRegistry,
    api_url: str,
    *,
    namespaces: Collection[str] = (),
    clusterwide: bool | None = None,
    settings: kopf.OperatorSettings | None = None,
    timeout: float = 10.0,
) -> Iterator[kopf.OperatorSettings]:
    """Run kopf until the `with` block ends; cluster-wide unless namespaces are given.

    `settings` are used for this run only: their executor is shut down afterwards, so that
    no worker thread of sync handlers outlives the operator.
    """
    settings = settings or test_settings()
    stop_flag, ready_flag = threading.Event(), threading.Event()
    failures: list[BaseException] = []
    _login_to(registry, api_url)

    def operate() -> None:
        try:
            asyncio.run(
                kopf.operator(
                    registry=registry,
                    settings=settings,
                    standalone=True,
                    clusterwide=not namespaces if clusterwide is None else clusterwide,
                    namespaces=namespaces,
                    stop_flag=stop_flag,
                    ready_flag=ready_flag,
                )
            )
        except BaseException as failure:  # reported to the test thread below
            failures.append(failure)
            ready_flag.set()

    thread = threading.Thread(target=operate, name="kopf-operator", daemon=True)
    thread.start()
    try:
        if not ready_flag.wait(timeout):
            raise TimeoutError(f"the operator was not ready within {timeout}s")
        if failures:
            raise RuntimeError("the operator failed to start") from failures[0]
        yield settings
    finally:
        stop_flag.set()
        thread.join(timeout)
        settings.execution.executor.shutdown(wait=True)
        if thread.is_alive():
            raise RuntimeError(f"the operator did not stop within {timeout}s")
