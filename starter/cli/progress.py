"""Progress bars for long work (``simulate``, ``close-report --run``), on stderr only.

Shown only when stderr is a terminal (and not turned off with ``--no-progress``): stdout
stays exactly the command's answer, and captured or piped output never sees a bar. rich
is imported only then, so the other commands do not pay for it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Advance = Callable[[int], None]


def _ignore(steps: int = 1) -> None:
    pass


@contextmanager
def progress(description: str, total: int | None, *, enabled: bool = True) -> Iterator[Advance]:
    """Yield ``advance(steps)``; ``total`` None shows a spinner with the time elapsed."""
    if not enabled or not sys.stderr.isatty():
        yield _ignore
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    columns = [SpinnerColumn(), TextColumn("{task.description}")]
    if total is not None:
        columns += [BarColumn(), MofNCompleteColumn()]
    # transient: the bar disappears when done, leaving the terminal as a pipe would see it.
    with Progress(
        *columns, TimeElapsedColumn(), console=Console(stderr=True), transient=True
    ) as bar:
        task = bar.add_task(description, total=total)

        def advance(steps: int = 1) -> None:
            bar.advance(task, steps)

        yield advance
