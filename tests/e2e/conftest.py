"""End-to-end tests need a real cluster: Docker to run kind, and kind itself.

They run with ``make e2e`` (which sets TROUPE_E2E=1 and installs helm and kubectl into
the venv, ``make tools``). Anywhere else, or where Docker or kind is missing, every test
here skips with one line saying why.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.support.helm import find_tool


def _missing() -> str | None:
    if os.environ.get("TROUPE_E2E") != "1":
        return "e2e tests run with `make e2e` (TROUPE_E2E=1) on a machine with Docker and kind"
    for tool in ("docker", "kind"):
        if shutil.which(tool) is None:
            return f"e2e tests need {tool}, which is not installed here"
    for tool in ("kubectl", "helm"):
        if find_tool(tool) is None:
            return f"e2e tests need {tool}: `make tools` installs it"
    if subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode != 0:
        return "e2e tests need a running Docker engine; `docker info` failed"
    return None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    reason = _missing()
    if reason is not None:
        for item in items:
            if "tests/e2e" in str(item.path):
                item.add_marker(pytest.mark.skip(reason=reason))
