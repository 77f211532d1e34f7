"""What a person watching ``troupe run`` sees: a live table on a terminal, plain lines elsewhere.

On a TTY a ``rich`` Live table shows every task's phase, attempts, duration
and tokens as they change; under CI or a pipe each Event is one plain line,
so logs stay greppable. Both end with the same final table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Protocol

from rich.console import Console
from rich.live import Live
from rich.table import Table

from troupe_operator.api import TaskStatus, WorkflowStatus
from troupe_operator.workflow import Event
from troupe_operator.workflow.timing import format_duration

PHASE_STYLES = {
    "Succeeded": "green",
    "Failed": "red",
    "Running": "cyan",
    "Retrying": "yellow",
    "Cancelled": "magenta",
    "Skipped": "dim",
}


class ProgressView(Protocol):
    def show(self, workflow: str, status: WorkflowStatus, events: list[Event]) -> None: ...

    def close(self, statuses: Mapping[str, WorkflowStatus]) -> None:
        """Stop updating; print the final table of ``statuses`` unless empty (interrupted)."""


def status_table(statuses: Mapping[str, WorkflowStatus], now: datetime | None = None) -> Table:
    """One row per task of every Workflow."""
    moment = now or datetime.now(UTC)
    table = Table(title="troupe run", title_justify="left")
    for column in ("workflow", "task", "phase", "attempts", "duration", "tokens", "message"):
        table.add_column(column, overflow="fold")
    for workflow, status in statuses.items():
        phase = status.phase.value if status.phase else "Pending"
        for name, task in status.tasks.items():
            table.add_row(
                workflow,
                name,
                f"[{PHASE_STYLES.get(task.phase.value, '')}]{task.phase.value}",
                str(task.attempts),
                _duration(task, moment),
                str(task.usage.total_tokens) if task.usage else "",
                task.message or "",
            )
        table.add_row(
            workflow,
            "[bold]all",
            f"[bold {PHASE_STYLES.get(phase, '')}]{phase}",
            status.progress or "",
            status.duration or "",
            str(status.usage.total_tokens) if status.usage else "",
            "" if status.tasks else status.message or "",
        )
    return table


def _duration(task: TaskStatus, now: datetime) -> str:
    if task.started_at is None:
        return ""
    return format_duration(((task.finished_at or now) - task.started_at).total_seconds())


class LiveView:
    """A table redrawn in place while the run goes on (terminals only)."""

    def __init__(self, console: Console) -> None:
        self.statuses: dict[str, WorkflowStatus] = {}
        self.live = Live(status_table({}), console=console, auto_refresh=False, transient=True)
        self.live.start()

    def show(self, workflow: str, status: WorkflowStatus, events: list[Event]) -> None:
        self.statuses[workflow] = status
        self.live.update(status_table(self.statuses), refresh=True)

    def close(self, statuses: Mapping[str, WorkflowStatus]) -> None:
        self.live.stop()
        if statuses:
            self.live.console.print(status_table(statuses))


class LogView:
    """One line per Event, then the final table: for CI logs and pipes."""

    def __init__(self, console: Console, clock: Callable[[], datetime] | None = None) -> None:
        self.console = console
        self.clock = clock or (lambda: datetime.now(UTC))

    def show(self, workflow: str, status: WorkflowStatus, events: list[Event]) -> None:
        stamp = self.clock().strftime("%H:%M:%S")
        for event in events:
            self.console.print(
                f"{stamp} {workflow} {event.type.value} {event.reason}: {event.message}",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )

    def close(self, statuses: Mapping[str, WorkflowStatus]) -> None:
        if statuses:
            self.console.print(status_table(statuses))


def make_view(console: Console) -> ProgressView:
    return LiveView(console) if console.is_terminal else LogView(console)
