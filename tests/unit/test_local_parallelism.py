"""The default bound on ``troupe run``'s task processes, from CPUs and available memory."""

from __future__ import annotations

from pathlib import Path

import pytest

from troupe_operator.local.parallelism import (
    TASK_MEMORY_BYTES,
    available_memory,
    default_parallelism,
)

GIB = 2**30


@pytest.mark.parametrize(
    ("cpus", "memory", "bound"),
    [
        (2, 23 * GIB, 2),  # CPUs bound it
        (64, 4 * GIB, 32),  # memory does: 4 GiB / 128 MiB
        (8, TASK_MEMORY_BYTES - 1, 1),  # never below one
        (0, None, 1),
        (12, None, 12),  # memory unknown: CPUs alone
    ],
)
def test_the_default_is_the_smaller_of_cpus_and_memory_per_task(
    cpus: int, memory: int | None, bound: int
) -> None:
    assert default_parallelism(cpus, memory) == bound


@pytest.mark.parametrize(
    ("meminfo", "limit", "current", "expected"),
    [
        ("MemTotal: 8000000 kB\nMemAvailable: 4000000 kB\n", None, None, 4_096_000_000),
        ("MemAvailable: 4000000 kB\n", "max", "123", 4_096_000_000),
        ("MemAvailable: 4000000 kB\n", "1073741824", "73741824", 1_000_000_000),
        (None, "1073741824", "2000000000", 0),  # over its limit already
        ("MemFree: 1 kB\n", None, None, None),
        (None, None, None, None),
    ],
)
def test_available_memory_is_the_least_of_meminfo_and_the_cgroup_headroom(
    tmp_path: Path, meminfo: str | None, limit: str | None, current: str | None, expected: int
) -> None:
    for name, text in (("meminfo", meminfo), ("memory.max", limit), ("memory.current", current)):
        if text is not None:
            (tmp_path / name).write_text(text)
    assert available_memory(tmp_path / "meminfo", tmp_path) == expected
