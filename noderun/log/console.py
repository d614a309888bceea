"""The console: a rich progress bar per epoch with live loss, accuracy and NFE, and a summary table."""
from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

console = Console()


def epoch_progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"),
        console=console,
        disable=not (enabled and console.is_terminal),
        transient=False,
    )


def summary_table(summary: dict[str, Any], keys: list[str]) -> Table:
    table = Table(title="run summary", show_header=False)
    for key in keys:
        if key in summary:
            value = summary[key]
            table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    return table
