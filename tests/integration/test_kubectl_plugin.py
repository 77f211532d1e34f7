"""``kubectl troupe``: the real kubectl finds the installed ``kubectl-troupe`` and runs the CLI."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def plugin_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment's scripts first on PATH, as an activated environment has them."""
    scripts = pathlib.Path(sys.executable).parent
    if not (scripts / "kubectl-troupe").exists():
        pytest.skip("kubectl-troupe not installed in this environment (pip install -e .)")
    monkeypatch.setenv("PATH", f"{scripts}{os.pathsep}{os.environ['PATH']}")


def kubectl(*args: str) -> subprocess.CompletedProcess[str]:
    """kubectl with no flag of its own: kubectl refuses flags before a plugin's name."""
    binary = shutil.which("kubectl")
    if binary is None:
        pytest.skip("kubectl not installed")
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=60, check=False)


def test_kubectl_lists_the_plugin_and_runs_it_as_kubectl_troupe(plugin_on_path: None) -> None:
    listed = kubectl("plugin", "list")
    assert "kubectl-troupe" in listed.stdout, listed.stderr
    helped = kubectl("troupe", "--help")
    assert helped.returncode == 0 and helped.stdout.startswith("usage: kubectl troupe")
    checked = kubectl("troupe", "validate", str(EXAMPLES / "tenant.yaml"))
    assert (checked.returncode, checked.stdout) == (
        0,
        "1 Troupe objects valid (0 other objects not checked)\n",
    )
    refused = kubectl("troupe", "validate", "/nonexistent.yaml")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
