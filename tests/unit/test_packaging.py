"""The distribution's packages import without shadowing the standard library."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys


def test_packages_import_beside_the_stdlib_operator_module() -> None:
    code = (
        "import operator, troupe_operator, troupe_agent; "
        "assert operator.itemgetter(0)([7]) == 7; print(operator.__file__)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "site-packages" not in result.stdout and "troupe" not in result.stdout


def test_api_import_stays_light() -> None:
    code = (
        "import sys, troupe_operator.api, troupe_operator.validation; "
        "heavy = {'kopf', 'kubernetes', 'langchain_core', 'langgraph'} & set(sys.modules); "
        "print(sorted(heavy))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


def test_importing_the_operator_needs_no_cluster(tmp_path: pathlib.Path) -> None:
    """Reproduced: the client was built at import time, so importing main needed a kubeconfig."""
    environment = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "KUBECONFIG": str(tmp_path / "missing"),
    }
    result = subprocess.run(
        [sys.executable, "-c", "import troupe_operator.main"],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment,
    )
    assert result.returncode == 0, result.stderr
