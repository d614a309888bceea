"""``noderun <command>``: thin entry points, no logic."""
from __future__ import annotations

import argparse
import sys

from . import __version__
from .solvers.methods import ADAPTIVE, FIXED_STEP


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="noderun", description="Neural ODE experiment runner")
    parser.add_argument("--version", action="version", version=f"noderun {__version__}")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("methods", help="list the ODE solver methods")
    demo = commands.add_parser("demo", help="solve a small ODE with every method and both gradient modes")
    demo.add_argument("--rtol", type=float, default=1e-6)
    args = parser.parse_args(argv)
    if args.command == "methods":
        print("fixed step:", ", ".join(FIXED_STEP))
        print("adaptive:  ", ", ".join(ADAPTIVE))
        return 0
    if args.command == "demo":
        from .demo import run_demo

        return run_demo(rtol=args.rtol)
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
