"""Where training is during an epoch: on a terminal, a rich bar for the epoch and one for the run, each
with the time left; elsewhere (a log file, a cluster job's output), a plain log line every ``every`` steps."""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from .console import console

log = logging.getLogger("noderun")


@dataclass
class Position:
    """Where an epoch starts: its title (``epoch 3/10``), its steps done and in all (a resumed epoch starts
    part-way; a step budget may end it early), and the run's steps done and in all."""

    title: str
    epoch_done: int
    epoch_steps: int
    run_done: int
    run_steps: int


def clock(seconds: float) -> str:
    """``3725.2`` → ``1:02:05``, as rich's remaining-time column writes it."""
    whole = max(0, round(seconds))
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def progress_bar(on: Console, shown: bool) -> Progress:
    """Bars with a description, done/total, the time left and a status text (hidden unless ``shown``)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        console=on,
        disable=not shown,
    )


class ShownProgress:
    """A ``progress_bar`` (``self.bar``) shown for the duration of a ``with`` block."""

    bar: Progress

    def __enter__(self):
        self.bar.start()
        return self

    def __exit__(self, *exception) -> None:
        self.bar.stop()


class EpochProgress(ShownProgress):
    """One epoch's progress, shown only when ``enabled``: a bar on a terminal, otherwise a log line each
    time the run's step count reaches a multiple of ``every`` (``None``: no lines). Call ``advance``
    after each step, inside ``with``."""

    def __init__(self, position: Position, enabled: bool, every: int | None):
        self.position, self.done, self.started = position, 0, time.perf_counter()
        self.every = every if enabled and not console.is_terminal else None
        self.bar = progress_bar(console, shown=enabled and console.is_terminal)
        self.epoch_bar = self.bar.add_task(
            position.title, total=position.epoch_steps, completed=position.epoch_done, status=""
        )
        self.run_bar = self.bar.add_task("run", total=position.run_steps, completed=position.run_done, status="")

    def advance(self, status: str) -> None:
        """One more step done; ``status`` describes it (loss, accuracy, NFE)."""
        self.done += 1
        self.bar.update(self.epoch_bar, advance=1, status=status)
        self.bar.update(self.run_bar, advance=1)
        if self.every and (self.position.run_done + self.done) % self.every == 0:
            log.info(self.line(status))

    def line(self, status: str) -> str:
        """``epoch 2/5 step 150/500: loss 0.41 ...; 0:00:12 left in the epoch, 0:03:10 in the run``, the time
        left estimated from this epoch's steps so far."""
        position, step = self.position, self.position.run_done + self.done
        seconds_per_step = (time.perf_counter() - self.started) / self.done
        epoch_left = (position.epoch_steps - position.epoch_done - self.done) * seconds_per_step
        run_left = (position.run_steps - step) * seconds_per_step
        time_left = f"{clock(epoch_left)} left in the epoch, {clock(run_left)} in the run"
        return f"{position.title} step {step}/{position.run_steps}: " + "; ".join(filter(None, (status, time_left)))


class WorkProgress(ShownProgress):
    """A long command's progress over ``total`` units of work (a bench trial, a figure's solve): on a
    terminal, a rich bar on stderr with the time left; elsewhere, each unit's line on stderr with the time
    left, estimated from the units so far. Call ``advance(line)`` after each unit, inside ``with``."""

    def __init__(self, title: str, total: int):
        self.total, self.done, self.started = total, 0, time.perf_counter()
        self.console = Console(stderr=True)
        self.bar = progress_bar(self.console, shown=self.console.is_terminal)
        self.task = self.bar.add_task(title, total=total, status="")

    def advance(self, line: str) -> None:
        self.done += 1
        self.bar.update(self.task, advance=1, status=line)
        if not self.console.is_terminal:
            left = (self.total - self.done) * (time.perf_counter() - self.started) / self.done
            print(f"[{self.done}/{self.total}] {line}; {clock(left)} left", file=sys.stderr, flush=True)
