"""Training progress: a live bar on a terminal, plain lines elsewhere (CI logs, `make demo | tee`), or nothing.

A rich bar draws nothing when the output is not a terminal, so a piped run was silent until its end;
there one line is printed every `every_seconds` (and for the last step) with the step, loss, tokens/s,
elapsed time and ETA.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress


class Progress:
    def __init__(
        self,
        total: int,
        start: int = 0,
        enabled: bool = True,
        *,
        stream: TextIO | None = None,
        every_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        stream = stream or sys.stdout
        self.enabled = enabled
        self._lines = PlainLines(total, start, stream, every_seconds, clock) if enabled else None
        if enabled and Console(file=stream).is_terminal:
            self._lines = None
        self._bar = RichProgress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[speed]} tok/s"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            disable=not enabled or self._lines is not None,
        )
        self._task = self._bar.add_task("train", total=total, completed=start, loss="-", speed="-")

    def __enter__(self) -> Progress:
        self._bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._bar.__exit__(*exc)

    def update(self, step: int, loss: float, tokens_per_s: float) -> None:
        self._bar.update(self._task, completed=step, loss=f"{loss:.4f}", speed=f"{tokens_per_s:,.0f}")
        if self._lines is not None:
            self._lines.update(step, loss, tokens_per_s)


class PlainLines:
    """One line per `every_seconds` of training (the first step and the last always), for logs and pipes."""

    def __init__(
        self, total: int, start: int, stream: TextIO, every_seconds: float, clock: Callable[[], float]
    ):
        self.total, self.start, self.stream = total, start, stream
        self.every_seconds, self.clock = every_seconds, clock
        self.started = clock()
        self.last_printed: float | None = None

    def update(self, step: int, loss: float, tokens_per_s: float) -> None:
        now = self.clock()
        due = self.last_printed is None or now - self.last_printed >= self.every_seconds
        if not (due or step >= self.total):
            return
        self.last_printed = now
        elapsed = now - self.started
        done = step - self.start
        eta = elapsed / done * (self.total - step) if done > 0 else None
        print(
            f"train step {step}/{self.total}  loss {loss:.4f}  {tokens_per_s:,.0f} tok/s  "
            f"elapsed {clock_time(elapsed)}  eta {clock_time(eta) if eta is not None else '-'}",
            file=self.stream,
            flush=True,
        )


def clock_time(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"
