"""``python -m pilothouse.cluster up|down|status ...``: the same as ``pilothouse up|down|status``."""

import argparse
import sys

from pilothouse.cluster._cli import add_cluster_commands


def main(argv: list[str] | None = None) -> int:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=None, help="config file")
    parser = argparse.ArgumentParser(prog="python -m pilothouse.cluster")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_cluster_commands(sub, common)
    args = parser.parse_args(argv)
    return args.handler(args) or 0


sys.exit(main())
