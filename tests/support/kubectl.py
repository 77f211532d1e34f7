"""Run the real `kubectl` against a kubeconfig (the emulator's, or a kind cluster's)."""

from __future__ import annotations

import pathlib
import shutil
import subprocess

import pytest


def run_kubectl(
    kubeconfig: pathlib.Path, *args: str, stdin: str | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """kubectl's whole result, whatever its exit code (skips the test without kubectl)."""
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
    result = run_kubectl(kubeconfig, *args, stdin=stdin, timeout=timeout)
    if result.returncode != 0:
        pytest.fail(f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr}")
    return result.stdout


def kubectl_refused(kubeconfig: pathlib.Path, *args: str, timeout: float = 30) -> str:
    """kubectl's stderr; fails the test if kubectl succeeded."""
    result = run_kubectl(kubeconfig, *args, timeout=timeout)
    if result.returncode == 0:
        pytest.fail(f"kubectl {' '.join(args)} succeeded: {result.stdout}")
    return result.stderr
