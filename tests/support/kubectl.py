"""Run the real `kubectl` against a kubeconfig (the emulator's, or a kind cluster's)."""

from __future__ import annotations

import pathlib
import shutil
import subprocess

import pytest


def _run(
    kubeconfig: pathlib.Path, args: tuple[str, ...], stdin: str | None, timeout: float
) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("kubectl")
    if binary is None:
        pytest.skip("kubectl not installed")
    return subprocess.run(
        [binary, "--kubeconfig", str(kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def kubectl(
    kubeconfig: pathlib.Path, *args: str, stdin: str | None = None, timeout: float = 30
) -> str:
    """kubectl's stdout; fails the test with kubectl's stderr on a non-zero exit."""
    result = _run(kubeconfig, args, stdin, timeout)
    if result.returncode != 0:
        pytest.fail(f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr}")
    return result.stdout


def kubectl_refused(kubeconfig: pathlib.Path, *args: str, timeout: float = 30) -> str:
    """kubectl's stderr; fails the test if kubectl succeeded."""
    result = _run(kubeconfig, args, None, timeout)
    if result.returncode == 0:
        pytest.fail(f"kubectl {' '.join(args)} succeeded: {result.stdout}")
    return result.stderr
