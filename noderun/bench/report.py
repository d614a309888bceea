"""The benchmark's rows as a rich table on the console."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from .suite import COLUMNS


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def print_table(rows: list[dict[str, Any]]) -> None:
    table = Table(*COLUMNS, title="noderun bench")
    for row in rows:
        table.add_row(*(cell(row.get(key)) for key in COLUMNS))
    Console(width=160).print(table)
