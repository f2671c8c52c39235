"""Progress of long jobs on a terminal: a bar with the count, the rate and the time left.

The bar is fed at most ten times a second (and rich redraws it at most that often), so a job of
thousands of small steps, images or video frames, does not pay for its bar.
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Iterable, Iterator, TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

UPDATE_SECONDS = 0.1
T = TypeVar("T")


class Meter:
    """Count steps of a job (`advance()`); shown on `console` when `enabled` (a terminal, usually)."""

    def __init__(self, description: str, total: int | None, unit: str, console: Console | None = None,
                 enabled: bool = True) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn(f"{unit},"),
            TextColumn("{task.fields[rate]:.1f} " + unit + "/s, ETA"), TimeRemainingColumn(),
            console=console or Console(stderr=True), disable=not enabled, refresh_per_second=10,
        )
        self.task = self.progress.add_task(description, total=total, rate=0.0)
        self.done, self.started, self.shown_at = 0, time.perf_counter(), 0.0
        self.ended: float | None = None

    @property
    def seconds(self) -> float:
        """Seconds from the start to the end of the `with` block (to now, inside it)."""
        return (self.ended or time.perf_counter()) - self.started

    @property
    def rate(self) -> float:
        """Steps a second so far."""
        return self.done / max(self.seconds, 1e-9)

    def advance(self, steps: int = 1) -> None:
        self.done += steps
        now = time.perf_counter()
        if now - self.shown_at >= UPDATE_SECONDS:
            self.shown_at = now
            self.progress.update(self.task, completed=self.done, rate=self.rate)

    def describe(self, text: str) -> None:
        """Change the words before the bar (`batch`: the faces found so far)."""
        self.progress.update(self.task, description=text)

    def track(self, items: Iterable[T]) -> Iterator[T]:
        """The items, each counted once the loop has finished with it (`continue` included)."""
        for item in items:
            yield item
            self.advance()

    def __enter__(self) -> Meter:
        self.progress.start()
        self.started = time.perf_counter()
        return self

    def __exit__(self, kind: type | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.ended = time.perf_counter()
        self.progress.update(self.task, completed=self.done, rate=self.rate)
        self.progress.stop()
