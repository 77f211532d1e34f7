"""Run the real `kubectl` against a kubeconfig (the emulator's, or a kind cluster's)."""

from __future__ import annotations

import pathlib
import shutil
import subprocess

import pytest


def kubectl(
    kubeconfig: pathlib.Path, *args: str, stdin: str | None = None, timeout: float = 30
) -> str:
    """kubectl's stdout; fails the test with kubectl's stderr on a non-zero exit."""
    binary = shutil.which("kubectl")
    if binary is None:
        pytest.skip("kubectl not installed")
    result = subprocess.run(
        [binary, "--kubeconfig", str(kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr}")
    return result.stdout
