"""How many task processes ``troupe run`` runs at once when ``--parallelism N`` is not given.

Each task attempt is a Python process of the agent runtime, and without a
bound every ready task starts at once (60 independent tasks were 62
processes and 4.7 GB). The default is derived from the machine, once, at
start::

    max(1, min(CPUs, available memory // TASK_MEMORY_BYTES))

- CPUs: those this process may run on (``os.sched_getaffinity``), else
  ``os.cpu_count()``.
- Available memory: ``MemAvailable`` of ``/proc/meminfo``, or what the
  cgroup v2 limit leaves (``/sys/fs/cgroup/memory.max`` minus
  ``memory.current``) when that is less. Where neither can be read
  (macOS), memory sets no bound.
- ``TASK_MEMORY_BYTES``: 128 MiB, above the peak RSS measured of one task
  process (Python 3.11, Linux): 79 MiB with the offline scripted model,
  113 MiB calling an OpenAI-compatible endpoint.

The bound holds across all Workflows of a run together; a Workflow's own
``spec.parallelism`` applies beneath it. Nothing here watches memory as the
run goes on, and nothing refuses a ``--parallelism`` above the default: the
person asking knows their tasks.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

TASK_MEMORY_BYTES: Final = 128 * 2**20
MEMINFO: Final = Path("/proc/meminfo")
CGROUP: Final = Path("/sys/fs/cgroup")


def default_parallelism(cpus: int, available_memory: int | None) -> int:
    """The bound for a machine with ``cpus`` CPUs and that much memory available (bytes)."""
    if available_memory is None:
        return max(1, cpus)
    return max(1, min(cpus, available_memory // TASK_MEMORY_BYTES))


def machine_parallelism() -> int:
    """The bound for this machine, as it is now."""
    return default_parallelism(usable_cpus(), available_memory())


def usable_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def available_memory(meminfo: Path = MEMINFO, cgroup: Path = CGROUP) -> int | None:
    """Bytes this process could still use, or None when the system does not say."""
    figures = [_mem_available(meminfo), _cgroup_headroom(cgroup)]
    return min((figure for figure in figures if figure is not None), default=None)


def _mem_available(meminfo: Path) -> int | None:
    try:
        lines = meminfo.read_text(encoding="ascii").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    for line in lines:
        name, _, value = line.partition(":")
        if name == "MemAvailable" and value.split()[1:] == ["kB"]:
            return int(value.split()[0]) * 1024
    return None


def _cgroup_headroom(cgroup: Path) -> int | None:
    try:
        limit = (cgroup / "memory.max").read_text(encoding="ascii").strip()
        used = (cgroup / "memory.current").read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    if not (limit.isdigit() and used.isdigit()):
        return None  # "max": no limit
    return max(0, int(limit) - int(used))
