"""The `autoui` command line.

Each subcommand lives in its own module in this package and exposes
`register(subparsers)`; modules are discovered automatically, so adding a command
never touches this file. Heavy imports belong inside the command's handler so that
`autoui --help` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import sys

log = logging.getLogger("autoui")


def build_parser() -> argparse.ArgumentParser:
    """Collect every subcommand module of this package into one parser."""
    parser = argparse.ArgumentParser(prog="autoui", description="autoui: a GUI agent that only looks at screens")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `autoui` console script. Returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`autoui ... | head`): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except CLIError as exc:
        print(f"autoui {args.command}: error: {exc}", file=sys.stderr)
        return 2


class CLIError(Exception):
    """A user-facing error: printed as one clear line, exit code 2, no traceback."""


if __name__ == "__main__":
    sys.exit(main())
