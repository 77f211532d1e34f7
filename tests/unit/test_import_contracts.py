"""The import contracts in pyproject.toml hold: the core is pure, layers import downward.

import-linter reads the contracts from ``[tool.importlinter]``; a broken one
fails this test with the offending import chain in its output.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_every_import_contract_is_kept() -> None:
    linter = pathlib.Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(linter), "--no-cache"], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout
