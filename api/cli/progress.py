"""Rich progress bars for long pipeline work (implements indexing.index_report.Progress)."""

from __future__ import annotations

from typing import Self

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from api.cli.common import err_console


class RichProgress:
    def __init__(self) -> None:
        self._bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                              TimeElapsedColumn(), console=err_console, transient=False)
        self._tasks: dict[str, TaskID] = {}

    def __enter__(self) -> Self:
        self._bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bars.stop()

    def begin(self, key: str, description: str, total: int) -> None:
        self._tasks[key] = self._bars.add_task(description, total=total)

    def expect(self, key: str, total: int) -> None:
        if key in self._tasks:
            self._bars.update(self._tasks[key], total=total)

    def advance(self, key: str, n: int = 1) -> None:
        if key in self._tasks:
            self._bars.advance(self._tasks[key], n)

    def end(self, key: str) -> None:
        task = self._tasks.pop(key, None)
        if task is not None:
            self._bars.update(task, completed=self._bars.tasks[self._bars.task_ids.index(task)].total)
