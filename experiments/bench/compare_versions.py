"""Two versions of noderun side by side in one process: this checkout against a git revision.

    .venv/bin/python experiments/bench/compare_versions.py --base e71d1b1 [--rounds 21] [--cases mlp,cnf]

The revision's ``noderun/`` is exported (``git archive``) into a temporary folder as the package
``noderun_base``, so both run in the same process, thread count and machine state. Each round times
one solve of every version in a shuffled order — the base twice, so that ``base'/base`` shows the
noise the same code has against itself — and the table gives the median per-round ratio ``new/base``
with its quartiles beside ``base'/base``. The cases are noderun bench's (noderun/bench/cases.py); no
compiled solves (their first call compiles for seconds).
"""

from __future__ import annotations

import argparse
import importlib
import io
import random
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import torch

import noderun
from noderun.bench.cases import cnf_case, latent_ode_case, mlp_case, odenet_case, van_der_pol_case

CASES = {
    "mlp": mlp_case,
    "odenet_block": odenet_case,
    "van_der_pol": van_der_pol_case,
    "latent_ode": latent_ode_case,
    "cnf": cnf_case,
}


def import_revision(revision: str, folder: Path):
    """``noderun/`` at ``revision`` imported as ``noderun_base`` (its imports inside the package are relative)."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", revision, "noderun"],
        check=True,
        capture_output=True,
        cwd=Path(__file__).resolve().parents[2],
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    (folder / "noderun").rename(folder / "noderun_base")
    sys.path.insert(0, str(folder))
    return importlib.import_module("noderun_base")


def passes(case) -> list[tuple[str, dict, str | None]]:
    """(label, options, mode): the forward solve, per-sample control where the bench has it, each backward."""
    found = [("forward", {}, None)]
    if "per_sample" in case.forward_modes:
        found.append(("forward:per_sample", {"per_sample": True}, None))
    return found + [(f"backward:{mode}", {}, mode) for mode in case.backward]


def timed(library, case, options: dict, mode: str | None) -> float:
    """Seconds of one forward solve (``mode`` None) or of one forward and ``backward()``."""
    started = time.perf_counter()
    kwargs = dict(method=case.method, rtol=case.rtol, atol=case.atol, options=options)
    grad = mode
    if mode == "adjoint_seminorm":
        grad, kwargs["adjoint_options"] = "adjoint", {"norm": "seminorm"}
    if mode is None:
        with torch.no_grad():
            library.odeint(case.func, case.y0, case.t, **kwargs)
    else:
        y0 = case.y0.clone().requires_grad_()
        library.odeint(case.func, y0, case.t, grad=grad, **kwargs)[-1].sum().backward()
    return time.perf_counter() - started


def compare(base, case, options: dict, mode: str | None, rounds: int) -> dict[str, list[float]]:
    seconds = {"base": [], "new": [], "again": []}
    libraries = {"base": base, "new": noderun, "again": base}
    for name in libraries:
        timed(libraries[name], case, options, mode)  # warm-up
    for _ in range(rounds):
        for name in random.sample(list(libraries), len(libraries)):
            seconds[name].append(timed(libraries[name], case, options, mode))
    return seconds


def ratio_text(numerator: list[float], denominator: list[float]) -> str:
    ratios = [a / b for a, b in zip(numerator, denominator)]
    low, _, high = statistics.quantiles(ratios, n=4)
    return f"{statistics.median(ratios):.3f} ({low:.3f}–{high:.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the git revision to compare against")
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--cases", default=",".join(CASES))
    args = parser.parse_args()
    torch.set_num_threads(1)
    random.seed(0)
    with tempfile.TemporaryDirectory() as folder:
        base = import_revision(args.base, Path(folder))
        print("| case | pass | base (ms) | new (ms) | new / base | base' / base |\n|---|---|---|---|---|---|")
        for name in args.cases.split(","):
            torch.manual_seed(0)
            case = CASES[name](False)
            for label, options, mode in passes(case):
                seconds = compare(base, case, options, mode, args.rounds)
                print(
                    f"| {name} | {label} | {statistics.median(seconds['base']) * 1e3:.3g} | "
                    f"{statistics.median(seconds['new']) * 1e3:.3g} | {ratio_text(seconds['new'], seconds['base'])} | "
                    f"{ratio_text(seconds['again'], seconds['base'])} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
