"""``noderun <command>``: thin entry points, no logic."""
from __future__ import annotations

import argparse
import sys

from . import __version__
from .solvers.methods import ADAPTIVE, FIXED_STEP


def train(overrides: list[str]) -> int:
    """``noderun train [Hydra overrides]``: Hydra reads the arguments after ``train``."""
    import hydra

    from .train.run import run

    @hydra.main(version_base="1.3", config_path="pkg://noderun.conf", config_name="config")
    def task(cfg) -> None:
        run(cfg)

    sys.argv = ["noderun train", *overrides]
    task()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["train"]:
        return train(argv[1:])
    parser = argparse.ArgumentParser(prog="noderun", description="Neural ODE experiment runner. "
                                     "`noderun train [overrides]` trains (Hydra; `noderun train --help`).")
    parser.add_argument("--version", action="version", version=f"noderun {__version__}")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("train", help="train a model: noderun train [key=value ...] (Hydra overrides, -m for sweeps)")
    report = commands.add_parser("report", help="tabulate every summary.json under a directory")
    report.add_argument("directory")
    report.add_argument("--group-by", default=None, help="config key to aggregate runs by (mean ± std)")
    report.add_argument("--metrics", default=None, help="comma-separated summary keys to show")
    commands.add_parser("methods", help="list the ODE solver methods")
    demo = commands.add_parser("demo", help="solve a small ODE with every method and every gradient mode")
    demo.add_argument("--rtol", type=float, default=1e-6)
    args = parser.parse_args(argv)
    if args.command == "methods":
        print("fixed step:", ", ".join(FIXED_STEP))
        print("adaptive:  ", ", ".join(ADAPTIVE))
        return 0
    if args.command == "demo":
        from .demo import run_demo

        return run_demo(rtol=args.rtol)
    if args.command == "report":
        from .report import report_command

        return report_command(args.directory, args.group_by, args.metrics)
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
