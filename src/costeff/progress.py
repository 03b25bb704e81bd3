"""Progress on a terminal for anything longer than a second; silent otherwise."""

from __future__ import annotations

import contextlib
import sys
from typing import Iterator, Protocol


class Task(Protocol):
    def advance(self, n: float = 1, description: str | None = None) -> None: ...


class _Silent:
    def advance(self, n: float = 1, description: str | None = None) -> None:
        return None


class _Rich:
    def __init__(self, progress, task_id) -> None:
        self._progress, self._id = progress, task_id

    def advance(self, n: float = 1, description: str | None = None) -> None:
        kwargs = {"description": description} if description else {}
        self._progress.update(self._id, advance=n, **kwargs)


@contextlib.contextmanager
def progress(description: str, total: float | None) -> Iterator[Task]:
    """A progress bar on stderr when stderr is a terminal; a no-op in pipes and tests."""
    if not sys.stderr.isatty():
        yield _Silent()
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:.0f}/{task.total:.0f}"),
                  TimeElapsedColumn(), console=Console(stderr=True), transient=True) as bar:
        yield _Rich(bar, bar.add_task(description, total=total))
