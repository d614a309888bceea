"""``noderun bench``: every case with noderun and, when installed, torchdiffeq, in one process with a
fixed thread count; one row per (case, library, pass), written as a table, CSV and JSON."""
from __future__ import annotations

import importlib.util
import json
import os
import platform
import time
from pathlib import Path
from typing import Any, Callable

import torch

from ..log.files import write_csv
from .cases import CASES, build_cases
from .measure import evaluation_seconds, measure_backward, measure_forward, measures, reference_solution

COLUMNS = ["case", "library", "pass", "time_s", "nfe", "steps", "error", "eval_s", "overhead", "saved_mb",
           "vs_torchdiffeq"]


def libraries() -> list[str]:
    return ["noderun"] + (["torchdiffeq"] if importlib.util.find_spec("torchdiffeq") else [])


def add_derived_columns(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``overhead`` = forward time / (NFE × one evaluation's time); ``vs_torchdiffeq`` = noderun's time /
    torchdiffeq's on the same case and pass."""
    times = {(row["case"], row["library"], row["pass"]): row["time_s"] for row in rows}
    for row in rows:
        if row["pass"].startswith("forward") and row.get("nfe") and row.get("eval_s"):
            row["overhead"] = row["time_s"] / (row["nfe"] * row["eval_s"])
        theirs = times.get((row["case"], "torchdiffeq", row["pass"]))
        if row["library"] == "noderun" and theirs:
            row["vs_torchdiffeq"] = row["time_s"] / theirs
    return rows


Progress = Callable[[str], None]


def run_case(case, repeats: int, libraries_to_run: list[str], progress: Progress) -> list[dict[str, Any]]:
    started = time.perf_counter()
    reference = reference_solution(case)
    eval_s = evaluation_seconds(case, repeats)
    progress(f"{case.name}: reference and one evaluation measured ({time.perf_counter() - started:.1f} s)")
    rows = []
    for library in libraries_to_run:
        started = time.perf_counter()
        rows.append({"case": case.name, "library": library, "pass": "forward", "eval_s": eval_s,
                     **measure_forward(case, library, repeats, reference)})
        if case.per_sample and library == "noderun":
            rows.append({"case": case.name, "library": library, "pass": "forward:per_sample", "eval_s": eval_s,
                         **measure_forward(case, library, repeats, reference, "per_sample")})
        for mode in (mode for mode in case.backward if measures(library, mode)):
            rows.append({"case": case.name, "library": library, "pass": f"backward:{mode}",
                         **measure_backward(case, library, mode, repeats)})
        progress(f"{case.name}: {library} measured ({time.perf_counter() - started:.1f} s)")
    return rows


def run_bench(names: list[str] | None = None, repeats: int = 5, threads: int = 1, tiny: bool = False,
              out: str | Path | None = None, progress: Progress = lambda line: None) -> list[dict[str, Any]]:
    """Every case (default: all), one row per (case, library, pass); ``progress`` gets a line per step."""
    if repeats < 1 or threads < 1:
        raise ValueError("bench needs --repeats and --threads of at least 1")
    torch.set_num_threads(threads)
    rows = []
    for case in build_cases(names or list(CASES), tiny):
        rows.extend(run_case(case, repeats, libraries(), progress))
    rows = add_derived_columns(rows)
    if out is not None:
        write_results(rows, Path(out), {"threads": threads, "repeats": repeats, "tiny": tiny})
    return rows


def write_results(rows: list[dict[str, Any]], out: Path, settings: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "bench.csv", [{key: row.get(key) for key in COLUMNS} for row in rows])
    machine = {"python": platform.python_version(), "torch": torch.__version__,
               "processor": platform.processor() or platform.machine(), "cpu_count": os.cpu_count()}
    if "torchdiffeq" in libraries():
        import torchdiffeq

        machine["torchdiffeq"] = getattr(torchdiffeq, "__version__", "unknown")
    (out / "bench.json").write_text(json.dumps({"settings": settings, "machine": machine, "rows": rows}, indent=2))
