"""``python -m pilothouse.controllers --server URL [--config PATH] [--identity ID]``: the
controller host as a process (the ``pilothouse controller-manager`` command does the same)."""

import argparse
import asyncio
import logging
import sys

from pilothouse.config import ConfigError, load_config
from pilothouse.controllers._host import run_controller_host


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pilothouse.controllers")
    parser.add_argument("--server", required=True, help="API server URL")
    parser.add_argument("--config", default=None, help="config file")
    parser.add_argument("--identity", default=None, help="leader-election identity "
                        "(default: <host name>_<pid>)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        asyncio.run(run_controller_host(load_config(args.config), args.server,
                                        identity=args.identity, handle_signals=True))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
