"""``noderun bench``: every case with noderun and, when installed, torchdiffeq, in one process with a
fixed thread count; one row per (case, library, pass), written as a table, CSV and JSON."""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..log.files import write_csv
from .cases import CASES, build_cases
from .measure import BackwardTrial, EvaluationTrial, ForwardTrial, interleaved, measures, reference_solution
from .stiff import STIFF_CASES, run_stiff_case, stiff_runs

COLUMNS = [
    "case",
    "library",
    "pass",
    "time_s",
    "nfe",
    "steps",
    "rejected",
    "jacobians",
    "error",
    "eval_s",
    "overhead",
    "saved_mb",
    "vs_torchdiffeq",
    "compile_s",
    "note",
]


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
    """Every pass of ``case``, each timed with the libraries interleaved repeat by repeat; a forward
    pass also times one evaluation of the function alone in the same rounds."""
    started = time.perf_counter()
    reference = reference_solution(case)
    progress(f"{case.name}: reference solved ({time.perf_counter() - started:.1f} s)")
    passes: list[tuple[str, Callable[[str], ForwardTrial | BackwardTrial], list[str]]] = [
        ("forward", lambda lib: ForwardTrial(case, lib, reference), libraries_to_run)
    ]
    for mode in case.forward_modes:
        passes.append((f"forward:{mode}", lambda lib, mode=mode: ForwardTrial(case, lib, reference, mode), ["noderun"]))
    for mode in case.backward:
        passes.append(
            (
                f"backward:{mode}",
                lambda lib, mode=mode: BackwardTrial(case, lib, mode),
                [lib for lib in libraries_to_run if measures(lib, mode)],
            )
        )
    rows = []
    for name, trial, libs in passes:
        started = time.perf_counter()
        trials = [trial(lib) for lib in libs]
        forward = name.startswith("forward")
        results = interleaved(trials + ([EvaluationTrial(case)] if forward else []), repeats)
        evaluation = results.pop() if forward else {}
        for library, row in zip(libs, results):
            rows.append({"case": case.name, "library": library, "pass": name, **evaluation, **row})
        progress(f"{case.name}: {name} measured ({time.perf_counter() - started:.1f} s)")
    order = {library: i for i, library in enumerate(libraries_to_run)}
    return sorted(rows, key=lambda row: order[row["library"]])


def units(names: list[str] | None, tiny: bool) -> int:
    """The steps ``run_bench`` reports to its ``progress`` for ``names`` (default: every case)."""
    count = 0
    for name in names or [*CASES, *STIFF_CASES]:
        if name in STIFF_CASES:
            count += 1 + len(stiff_runs())
        elif name in CASES:
            case = CASES[name](tiny)
            count += 2 + len(case.forward_modes) + len(case.backward)
    return count


def run_bench(
    names: list[str] | None = None,
    repeats: int = 5,
    threads: int = 1,
    tiny: bool = False,
    out: str | Path | None = None,
    progress: Progress = lambda line: None,
) -> list[dict[str, Any]]:
    """Every case (default: all), one row per (case, library, pass); ``progress`` gets a line per step. The
    stiff cases (``bench.stiff``) compare methods against SciPy rather than libraries."""
    if repeats < 1 or threads < 1:
        raise ValueError("bench needs --repeats and --threads of at least 1")
    names = names or [*CASES, *STIFF_CASES]
    unknown = [name for name in names if name not in CASES and name not in STIFF_CASES]
    if unknown:
        raise ValueError(f"unknown bench case(s) {', '.join(unknown)}; valid: {', '.join([*CASES, *STIFF_CASES])}")
    torch.set_num_threads(threads)
    rows = []
    for name in names:
        if name in STIFF_CASES:
            rows.extend(run_stiff_case(STIFF_CASES[name](tiny), repeats, progress))
        else:
            rows.extend(run_case(build_cases([name], tiny)[0], repeats, libraries(), progress))
    rows = add_derived_columns(rows)
    if out is not None:
        write_results(rows, Path(out), {"threads": threads, "repeats": repeats, "tiny": tiny})
    return rows


def write_results(rows: list[dict[str, Any]], out: Path, settings: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "bench.csv", [{key: row.get(key) for key in COLUMNS} for row in rows])
    machine = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    if "torchdiffeq" in libraries():
        import torchdiffeq  # pyright: ignore[reportMissingImports]  # optional: the bench extra

        machine["torchdiffeq"] = getattr(torchdiffeq, "__version__", "unknown")
    (out / "bench.json").write_text(json.dumps({"settings": settings, "machine": machine, "rows": rows}, indent=2))
