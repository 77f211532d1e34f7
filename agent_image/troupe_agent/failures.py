"""How a step of task mode says it cannot go on: one line, and the exit code the Job acts on.

Each step raises :class:`TaskFailed` with ``EXIT_PERMANENT`` when no other
attempt can cure the failure (bad input, a missing upstream output, a broken
template, a refused key) and ``EXIT_RETRYABLE`` when one may (timeouts, a busy
API or model). The step that fails knows which; this module only carries the
verdict, keeps the message on one scrubbed line short enough for the task's
report, and refuses to choose an exit code for anyone.
"""

from __future__ import annotations

from troupe_agent.scrub import one_line
from troupe_operator.api import REPORT_MESSAGE_CHARS


class TaskFailed(Exception):
    """A task failure with its exit code; the message is one line for the task's report."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(one_line(message, REPORT_MESSAGE_CHARS))
        self.exit_code = exit_code
