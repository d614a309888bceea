"""metrics.jsonl, summary.json and TensorBoard event files in a run's output directory."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any

METRICS_NAME = "metrics.jsonl"
SUMMARY_NAME = "summary.json"


def _clean(value: Any) -> Any:
    """JSON-safe: non-finite floats become strings, as JSON has no NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Rows of dicts as CSV; the columns are every key that appears, in order of appearance."""
    fields = list(dict.fromkeys(key for row in rows for key in row))
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps({k: _clean(v) for k, v in data.items()}, indent=2) + "\n")
    os.replace(temporary, path)


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """One JSON object as one line at the end of ``path``."""
    with path.open("a") as file:
        file.write(json.dumps({k: _clean(v) for k, v in record.items()}) + "\n")


class MetricsWriter:
    """Appends one JSON object per epoch record to metrics.jsonl and mirrors its numbers to TensorBoard;
    per-step numbers go to TensorBoard alone."""

    def __init__(self, output_dir: Path, tensorboard: bool = True, enabled: bool = True):
        self.path = output_dir / METRICS_NAME
        self.enabled = enabled  # False: write nothing (the other processes of a multi-process run)
        self.tensorboard = None
        if tensorboard and enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(log_dir=str(output_dir / "tensorboard"))

    def write(self, record: dict[str, Any], step: int) -> None:
        if not self.enabled:
            return
        append_jsonl(self.path, record)
        if self.tensorboard is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and key not in ("epoch", "step"):
                    self.tensorboard.add_scalar(key, value, step)

    def write_step(self, scalars: dict[str, float], step: int) -> None:
        """Per-step numbers (loss, NFE) to TensorBoard alone, as ``step/<key>``."""
        if self.enabled and self.tensorboard is not None:
            for key, value in scalars.items():
                self.tensorboard.add_scalar(f"step/{key}", value, step)

    def write_hparams(self, hparams: dict[str, Any], metrics: dict[str, float]) -> None:
        """The run's settings and final numbers (as ``final/<key>``) for TensorBoard's HParams dashboard, in the
        run's own TensorBoard folder, so that a sweep's runs line up side by side there."""
        if self.enabled and self.tensorboard is not None:
            self.tensorboard.add_hparams(
                hparams, {f"final/{key}": value for key, value in metrics.items()}, run_name="."
            )

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()


def read_metrics(output_dir: Path) -> list[dict[str, Any]]:
    path = Path(output_dir) / METRICS_NAME
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
