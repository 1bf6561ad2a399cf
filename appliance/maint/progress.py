"""Progress for long work on the CLI: a bar over named steps, with a spinner while a step of
unknown length (a backup, a migration transaction) runs.

Work reports through the `Steps` protocol, so the same code runs silent in tests and the
admin UI can drive its own bar from the same calls.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)


class Steps(Protocol):
    def start(self, what: str) -> None:
        """A step begins (shown until the next start or done)."""

    def done(self, what: str) -> None:
        """The current step finished; `what` says how it went."""

    def failed(self, what: str) -> None:
        """The current step failed; `what` says why."""


class Silent:
    """Records the steps (tests read them), shows nothing."""

    def __init__(self) -> None:
        self.log: list[str] = []

    def start(self, what: str) -> None:
        self.log.append(f"start {what}")

    def done(self, what: str) -> None:
        self.log.append(f"done {what}")

    def failed(self, what: str) -> None:
        self.log.append(f"failed {what}")


class StepBar:
    """`Steps` on a rich progress bar: one tick per finished step, a line printed for each."""

    def __init__(self, progress: Progress, task: TaskID) -> None:
        self._progress = progress
        self._task = task

    def start(self, what: str) -> None:
        task = self._progress.tasks[self._task]
        if task.total is not None and task.completed >= task.total:
            # A step nobody planned for (a rollback): the bar grows rather than overflows.
            self._progress.update(self._task, total=task.total + 1)
        self._progress.update(self._task, description=what)

    def done(self, what: str) -> None:
        self._progress.console.print(f"  [green]✓[/] {what}", highlight=False)
        self._progress.advance(self._task)

    def failed(self, what: str) -> None:
        self._progress.console.print(f"  [bold red]✗[/] {what}", highlight=False)
        self._progress.advance(self._task)


@contextmanager
def step_bar(console: Console, title: str, total: int) -> Iterator[StepBar]:
    """A bar of `total` steps titled `title`; transient where the terminal allows."""
    columns = (
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=console.is_terminal) as progress:
        task = progress.add_task(title, total=total)
        yield StepBar(progress, task)


@contextmanager
def activity(console: Console, what: str) -> Iterator[None]:
    """A spinner with elapsed time for one piece of work whose length nobody knows; nothing
    on a console that is not a terminal (a log wants the result, not frames)."""
    if not console.is_terminal:
        yield
        return
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        progress.add_task(what, total=None)
        yield
