"""``pilothouse node``: run a node agent with the runtime (and network) driver the config
names, against an API server."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys

from pilothouse.config import Config, ConfigError, load_config, parse_config
from pilothouse.plugins import load_plugins

__all__ = ["add_node_command", "cmd_node", "run_node_agent"]

log = logging.getLogger("pilothouse.node")


def _drivers(config: Config):
    """Load only what a node needs (its runtime and network drivers, and the broadcast
    plugins), so that a store or proxy not installed on this machine does not matter."""
    doc: dict = {"base": "none"}
    for slot in ("runtime", "network"):
        ref = config.driver(slot)
        if ref is not None:
            doc[slot] = {"plugin": ref.name, "options": dict(ref.options)}
    if "runtime" not in doc:
        raise ConfigError(["runtime: no plugin configured; a node agent needs one "
                           "(e.g. 'runtime: {plugin: containerd, options: {manage: true}}')"],
                          config.source)
    doc["plugins"] = {"disabled": sorted(config.disabled_plugins())}
    loaded = load_plugins(parse_config(doc, config.source))
    return loaded, loaded.driver("runtime"), loaded.drivers.get("network")


async def run_node_agent(config: Config, server_url: str, *, node_name: str | None = None,
                         token: str | None = None, stop: asyncio.Event | None = None) -> None:
    """Run a node agent until ``stop`` is set (or SIGINT/SIGTERM when ``stop`` is None).
    Pods keep running when it ends."""
    from pilothouse.client import Client
    from pilothouse.node._agent import NodeAgent
    from pilothouse.node._settings import settings
    options = settings(config, {"nodeName": node_name} if node_name else None)
    loaded, runtime, network = _drivers(config)
    loaded.pm.hook.pilothouse_configure(config=config)
    client = Client(server_url, token=token or os.environ.get("PILOTHOUSE_TOKEN") or None,
                    user_agent=f"pilothouse-node/{options.node_name()}")
    agent = NodeAgent(client, runtime, network.instance if network else None,
                      node_name=options.node_name(), options=options,
                      plugin_manager=loaded.pm)
    agent.config = config
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    try:
        await agent.start()
        print(f"pilothouse node: {agent.node_name} registered with {server_url}; runtime "
              f"{agent.runtime_name}; endpoint on {options.address}:{agent.port}", flush=True)
        await stop.wait()
    finally:
        await agent.stop()
        await client.close()


def cmd_node(args) -> int:
    """The handler of ``pilothouse node``."""
    logging.basicConfig(level=getattr(logging, (args.log_level or "INFO").upper(), logging.INFO),
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        config = load_config(getattr(args, "config", None))
        asyncio.run(run_node_agent(config, args.server, node_name=args.node_name,
                                   token=args.token))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


def _arguments(parser: argparse.ArgumentParser, config: bool) -> None:
    if config:
        parser.add_argument("--config", default=None, help="config file")
    parser.add_argument("--server", required=True, help="URL of the API server")
    parser.add_argument("--node-name", default=None,
                        help="the Node's name (default: components.node.nodeName, else "
                             "the host name)")
    parser.add_argument("--token", default=None,
                        help="bearer token for the API server (default: $PILOTHOUSE_TOKEN)")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    parser.set_defaults(handler=cmd_node)


def add_node_command(subparsers, common: argparse.ArgumentParser | None = None) -> None:
    """Add ``pilothouse node`` to the CLI's sub-parsers (``common`` carries ``--config``)."""
    parser = subparsers.add_parser(
        "node", parents=[common] if common is not None else [],
        help="run a node agent: register this machine as a Node and run the pods bound "
             "to it through the configured runtime")
    _arguments(parser, config=common is None)


def main(argv: list[str] | None = None) -> int:
    """``python -m pilothouse.node``: the same as ``pilothouse node``."""
    parser = argparse.ArgumentParser(prog="python -m pilothouse.node",
                                     description="Run a Pilothouse node agent.")
    _arguments(parser, config=True)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        return args.handler(args)
    return 0
