"""``python -m pilothouse.cluster._launch COMPONENT --config C --server URL``: run a
component from its coroutine when the ``pilothouse`` CLI of this installation does not have
its command yet. ``pilothouse up`` prefers the CLI command (see ``_components.py``); this is
only the bridge while a component's command is not wired into ``pilothouse.cli``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from pilothouse.config import ConfigError, load_config


async def _run_scheduler(config, server: str) -> None:
    from pilothouse.client import Client
    from pilothouse.scheduler import run_scheduler
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    client = Client(server, user_agent="pilothouse-scheduler/0.1")
    try:
        print(f"pilothouse scheduler: serving against {server}", flush=True)
        await run_scheduler(config, client, stop=stop)
    finally:
        await client.close()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "node":
        from pilothouse.node._run import main as node_main
        return node_main(argv[1:])
    if argv and argv[0] == "controller-manager":
        from pilothouse.controllers.__main__ import main as controllers_main
        return controllers_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m pilothouse.cluster._launch")
    parser.add_argument("component", choices=["scheduler"])
    parser.add_argument("--config", required=True)
    parser.add_argument("--server", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        asyncio.run(_run_scheduler(load_config(args.config), args.server))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
