"""``noderun <command>``: thin entry points, no logic."""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys

from . import __version__


def train(overrides: list[str]) -> int:
    """``noderun train [Hydra overrides]``: Hydra reads the arguments after ``train``. Exit status: 0 when
    every run completed, 2 for a config value no run can use, 128 + the signal for a stopped run, else 1.
    In a sweep, a run that fails does not stop the others; a stop signal stops the sweep. A launcher or sweeper
    whose plugin is not installed is refused first (2)."""
    from .train.plugins import missing_plugin

    refusal = missing_plugin(overrides)
    if refusal:
        return refuse(refusal)
    import hydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    # the config schemas; noderun.conf is the top-level conf/ by setuptools' package-dir, which pyright cannot follow
    import noderun.conf  # noqa: F401  # pyright: ignore[reportMissingImports]

    from .train import folders
    from .train.config_errors import composition_refusal, output_dir_refusal, swept_groups_hint
    from .train.launch import objective, run_status
    from .train.resumed import with_run_overrides

    codes: list[int] = []
    folders.forget()  # a previous train() in this process took its own folders

    @hydra.main(version_base="1.3", config_path="pkg://noderun.conf", config_name="config")
    def task(cfg) -> float:
        code, summary = run_status(cfg)
        codes.append(code)
        return objective(cfg, summary)

    sys.argv = ["noderun train", *with_run_overrides(overrides)]
    full_error = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises its errors instead of printing them: one line each below
    try:
        task()
    except KeyboardInterrupt:  # a second stop signal
        codes.append(128 + signal.SIGINT)
    except SystemExit as exit_:  # a stopped run (Hydra's own errors are raised: HYDRA_FULL_ERROR)
        codes.append(int(exit_.code or 0))
    except (HydraException, OmegaConfBaseException) as error:  # a config Hydra cannot compose
        refusal = composition_refusal(error)
        return refuse(refusal + swept_groups_hint(refusal, overrides))
    except OSError as error:  # Hydra could not create or write the run folder
        return refuse(output_dir_refusal(error, multirun=bool({"-m", "--multirun"} & set(overrides))))
    finally:
        _restore_env("HYDRA_FULL_ERROR", full_error)
    return max(codes, default=0)


def refuse(message: str) -> int:
    """A config no run can use: one line, exit status 2."""
    print(f"config: {message}", file=sys.stderr)
    return 2


def _restore_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def positive_number(text: str) -> float:
    """An argument that must be a finite positive number (argparse refuses it in one line otherwise)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: accepted values: a finite positive number")
    return value


def positive_numbers(text: str) -> tuple[float, ...]:
    """A comma-separated list of finite positive numbers."""
    return tuple(positive_number(part) for part in text.split(","))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="noderun",
        description="Neural ODE experiment runner. `noderun train [overrides]` trains (Hydra; `noderun train --help`).",
    )
    parser.add_argument("--version", action="version", version=f"noderun {__version__}")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("train", help="train a model: noderun train [key=value ...] (Hydra overrides, -m for sweeps)")
    report = commands.add_parser("report", help="tabulate every summary.json under a directory")
    report.add_argument("directory")
    report.add_argument(
        "--group-by",
        default=None,
        help="config keys, comma-separated, to aggregate runs by "
        "(mean ± std over each combination), written to report_by_KEY.md and .csv",
    )
    report.add_argument("--metrics", default=None, help="comma-separated summary keys to show")
    report.add_argument(
        "--plot",
        nargs=2,
        metavar=("X", "Y"),
        default=None,
        help="a PNG of summary value Y against X, one point per configuration with mean ± std over its seeds",
    )
    report.add_argument("--hue", default=None, help="with --plot: the config key whose values get a line each")
    figure3 = commands.add_parser("figure3", help="the paper's Figure 3 (NFE statistics) from a trained ODE-Net run")
    figure3.add_argument("run", help="a run directory or its checkpoint.pt")
    figure3.add_argument("--out", default=None, help="output directory (default: RUN/figure3)")
    figure3.add_argument("--batch-size", type=int, default=128, help="test images to solve")
    figure3.add_argument("--tolerances", default=None, help="comma-separated dopri5 tolerances to sweep")
    gradcheck = commands.add_parser(
        "gradcheck",
        help="each gradient mode's gradient error against a float64 "
        "reference, across tolerances, with NFE, time and memory, for a trained run",
    )
    gradcheck.add_argument("run", help="a run directory or its checkpoint.pt (trained with an adaptive method)")
    gradcheck.add_argument("--out", default=None, help="output directory (default: RUN/gradcheck)")
    gradcheck.add_argument("--batch-size", type=int, default=32, help="test samples in the loss")
    gradcheck.add_argument(
        "--tolerances", type=positive_numbers, default=None, help="comma-separated tolerances (default: 1e-3 ... 1e-7)"
    )
    memory = commands.add_parser("memory-depth", help="memory of one training iteration against depth, per grad mode")
    memory.add_argument("--out", default="outputs/memory_depth")
    memory.add_argument("--multiples", default="1,2,4,8")
    memory.add_argument("--batch-size", type=int, default=32)
    memory.add_argument("--device", default="cpu")
    spirals = commands.add_parser("spiral-figures", help="the paper's Figures 8 and 9 from spiral runs")
    spirals.add_argument("--latent-ode", required=True, help="a latent ODE run directory or checkpoint")
    spirals.add_argument("--rnn", required=True, help="an RNN run directory or checkpoint (same spirals)")
    spirals.add_argument("--out", default="outputs/spiral_figures")
    flows = commands.add_parser(
        "flow-figures",
        help="the paper's Figures 4-6 (densities, samples, the flow "
        "from noise to data) from cnf or planar_nf runs, one row per run",
    )
    flows.add_argument("runs", nargs="+", help="run directories or checkpoints")
    flows.add_argument("--out", default="outputs/flow_figures")
    bench = commands.add_parser(
        "bench",
        help="time, NFE, error and memory of fixed problems, beside torchdiffeq "
        "when it is installed (pip install -e '.[bench]')",
    )
    bench.add_argument("--cases", default=None, help="comma-separated cases (default: all)")
    bench.add_argument("--repeats", type=int, default=5, help="timed repeats per measurement (median reported)")
    bench.add_argument("--threads", type=int, default=1, help="torch threads")
    bench.add_argument("--tiny", action="store_true", help="shrink every problem to seconds (a smoke run)")
    bench.add_argument(
        "--work-precision",
        action="store_true",
        help="work-precision diagrams instead: every "
        "applicable method across tolerances (fixed-step ones across step sizes), with torchdiffeq and "
        "SciPy where installed; CSV and one PNG per problem",
    )
    bench.add_argument(
        "--tolerances",
        type=positive_numbers,
        default=None,
        help="with --work-precision: comma-separated tolerances (default: 1e-3 ... 1e-10, stiff 1e-8)",
    )
    bench.add_argument(
        "--out",
        default=None,
        help="output directory (default: outputs/bench, outputs/work_precision with --work-precision)",
    )
    commands.add_parser("methods", help="list the ODE solver methods")
    demo = commands.add_parser("demo", help="solve a small ODE with every method and every gradient mode")
    demo.add_argument("--rtol", type=positive_number, default=1e-6, help="rtol = atol of every solve")
    return parser


def refuse_arguments(command: str, why: str) -> int:
    """Arguments that do not go together: one line, exit status 2."""
    print(f"noderun {command}: {why}", file=sys.stderr)
    return 2


def print_paths(paths) -> int:
    for path in paths:
        print(f"wrote {path}")
    return 0


def report(args) -> int:
    from .report import report_command

    if args.hue and not args.plot:
        return refuse_arguments("report", "--hue colours the lines of --plot X Y; add --plot or drop --hue")
    return report_command(args.directory, args.group_by, args.metrics, args.plot, args.hue)


def figure3(args) -> int:
    from .studies.figure3 import TOLERANCES, figure3

    tolerances = tuple(float(x) for x in args.tolerances.split(",")) if args.tolerances else TOLERANCES
    return print_paths(figure3(args.run, args.out, args.batch_size, tolerances))


def gradcheck(args) -> int:
    from .studies.gradcheck import TOLERANCES, gradcheck

    return print_paths(gradcheck(args.run, args.out, args.batch_size, args.tolerances or TOLERANCES))


def memory_depth(args) -> int:
    from .studies.memory_depth import memory_depth

    rows = memory_depth(args.out, tuple(int(x) for x in args.multiples.split(",")), args.batch_size, device=args.device)
    for row in rows:
        print(
            ", ".join(
                f"{key} {value:.3g}" if isinstance(value, float) else f"{key} {value}" for key, value in row.items()
            )
        )
    return print_paths([f"{args.out}/memory_depth.csv", f"{args.out}/memory_depth.png"])


def spiral_figures(args) -> int:
    from .studies.spiral_figures import spiral_figures

    return print_paths(spiral_figures(args.latent_ode, args.rnn, args.out))


def flow_figures(args) -> int:
    from .studies.flow_figures import flow_figures

    return print_paths(flow_figures(args.runs, args.out))


def bench(args) -> int:
    from .bench.report import print_table
    from .bench.suite import run_bench, units
    from .log.progress import WorkProgress

    names = args.cases.split(",") if args.cases else None
    if args.tolerances and not args.work_precision:
        return refuse_arguments("bench", "--tolerances sets the ladder of --work-precision; add it or drop it")
    if args.work_precision:
        from .bench.precision import work_precision

        out = args.out or "outputs/work_precision"
        rows = work_precision(names, args.repeats, args.threads, args.tiny, out, args.tolerances)
        return print_paths([f"{out}/work_precision.csv", *sorted({f"{out}/{row['problem']}.png" for row in rows})])
    out = args.out or "outputs/bench"
    with WorkProgress("bench", units(names, args.tiny)) as progress:
        rows = run_bench(names, args.repeats, args.threads, args.tiny, out, progress=progress.advance)
    print_table(rows)
    return print_paths([f"{out}/bench.csv", f"{out}/bench.json"])


def methods(args) -> int:
    from .solvers.methods import ADAMS, ADAPTIVE, ALIASES, FIXED_STEP, IMPLICIT, SCIPY, STIFF

    print("fixed step:", ", ".join(FIXED_STEP))
    print("adaptive:  ", ", ".join(ADAPTIVE))
    print("implicit:  ", ", ".join(IMPLICIT))
    print("stiff:     ", ", ".join(STIFF), "(adaptive implicit)")
    print("multistep: ", ", ".join(ADAMS))
    print("SciPy:     ", ", ".join(SCIPY), "(options['solver']: RK45, RK23, DOP853, Radau, BDF, LSODA)")
    print("aliases:   ", ", ".join(f"{alias} (= {name})" for alias, name in ALIASES.items()))
    return 0


def demo(args) -> int:
    from .demo import run_demo

    return run_demo(rtol=args.rtol)


COMMANDS = {
    "report": report,
    "figure3": figure3,
    "gradcheck": gradcheck,
    "memory-depth": memory_depth,
    "spiral-figures": spiral_figures,
    "flow-figures": flow_figures,
    "bench": bench,
    "methods": methods,
    "demo": demo,
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["train"]:
        return train(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command not in COMMANDS:
        parser.print_help()
        return 0
    from .errors import ConfigError

    try:
        return COMMANDS[args.command](args)
    except ConfigError as error:  # e.g. a checkpoint that is not plain data: one line, no traceback
        print(f"noderun {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
