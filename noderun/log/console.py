"""The console (rich, on stdout) and the run's summary table."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from .precision import rounded

console = Console()


def summary_table(summary: dict[str, Any], keys: list[str]) -> Table:
    """``keys`` of the summary, numbers rounded as summary.json has them (precision.py)."""
    table = Table(title="run summary", show_header=False)
    shown = rounded(summary)
    for key in keys:
        if key in shown:
            value = shown[key]
            table.add_row(key, f"{value:g}" if isinstance(value, float) else str(value))
    return table
