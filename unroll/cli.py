"""The ``unroll`` command: parses arguments and calls the same functions the Python API exposes.

Each recipe module registers its own subcommands (``register(subparsers)``); every handler
returns an exit status. A `UserError` anywhere becomes one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import sys

from unroll import __version__
from unroll.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    from unroll.recipes import classify, forecast, lm

    parser = argparse.ArgumentParser(
        prog="unroll", description="Train, evaluate and sample recurrent sequence models."
    )
    parser.add_argument("--version", action="version", version=f"unroll {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    lm.register(sub)
    classify.register(sub)
    forecast.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = ["unroll", *argv]  # recorded in the run directory's command.txt
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"unroll: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "unroll: interrupted (the last completed epoch's checkpoint is kept)", file=sys.stderr
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
