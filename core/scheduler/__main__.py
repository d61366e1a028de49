"""``python -m pilothouse.scheduler [options]``: the same as ``pilothouse scheduler``."""

import argparse
import sys

from pilothouse.scheduler._cli import add_scheduler_command


def main(argv: list[str] | None = None) -> int:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=None, help="config file")
    parser = argparse.ArgumentParser(prog="python -m pilothouse.scheduler")
    sub = parser.add_subparsers(dest="command", required=True)
    add_scheduler_command(sub, common)
    args = parser.parse_args(["scheduler", *(sys.argv[1:] if argv is None else argv)])
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
