"""The distribution's packages import without shadowing the standard library."""

from __future__ import annotations

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
