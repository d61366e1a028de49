"""``pilothouse scheduler``: run the scheduler host against an API server.

::

    pilothouse scheduler [--config FILE] [--server URL | --kubeconfig FILE]
                         [--token TOKEN] [--insecure-skip-tls-verify]
                         [--profile NAME ...] [--leader-elect] [--identity ID] [-v]

The API server comes from ``--server`` (with ``--token``), else from a kubeconfig
(``--kubeconfig``, else ``$KUBECONFIG``, else ``~/.kube/config``; its current context's
server, certificate authority, ``insecure-skip-tls-verify`` and bearer token). Profiles and
plugins come from the config's ``scheduler`` section; settings from
``components.scheduler``, which ``--profile`` and ``--leader-elect`` override. Exit codes: 0
after SIGINT/SIGTERM, 1 on a config or connection problem.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import logging
import os
import pathlib
import signal
import sys
import tempfile

import yaml

from pilothouse.config import ConfigError, load_config

__all__ = ["add_scheduler_command", "client_settings_from_kubeconfig", "cmd_scheduler"]


def client_settings_from_kubeconfig(path: str | None) -> dict:
    """``{"url", "token", "ca_file", "insecure"}`` of the current context of a kubeconfig."""
    path = path or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or "~/.kube/config"
    target = pathlib.Path(os.path.expanduser(path))
    try:
        doc = yaml.safe_load(target.read_text()) or {}
    except OSError as exc:
        raise ConfigError([f"cannot read kubeconfig: {exc.strerror}"], str(target)) from None

    def named(section: str, name: str | None) -> dict:
        for entry in doc.get(section) or []:
            if entry.get("name") == name:
                return entry.get(section[:-1]) or {}
        return {}
    context = named("contexts", doc.get("current-context"))
    cluster = named("clusters", context.get("cluster"))
    user = named("users", context.get("user"))
    if not cluster.get("server"):
        raise ConfigError(["the current context has no cluster server"], str(target))
    ca_file = cluster.get("certificate-authority")
    if cluster.get("certificate-authority-data"):
        handle = tempfile.NamedTemporaryFile("wb", suffix=".crt", delete=False)
        handle.write(base64.b64decode(cluster["certificate-authority-data"]))
        handle.close()
        ca_file = handle.name
    token = user.get("token")
    if not token and user.get("tokenFile"):
        token = pathlib.Path(os.path.expanduser(user["tokenFile"])).read_text().strip()
    return {"url": cluster["server"], "token": token, "ca_file": ca_file,
            "insecure": bool(cluster.get("insecure-skip-tls-verify"))}


def cmd_scheduler(args: argparse.Namespace) -> int:
    from pilothouse.client import Client
    from pilothouse.scheduler._host import Scheduler
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        config = load_config(getattr(args, "config", None))
        if args.leader_elect:
            raw = dict(config.raw)
            comps = dict(raw.get("components") or {})
            comps["scheduler"] = {**(comps.get("scheduler") or {}), "leaderElect": True}
            raw["components"] = comps
            config = type(config)(raw, config.source)
        if args.server:
            conn = {"url": args.server, "token": args.token, "ca_file": None,
                    "insecure": args.insecure_skip_tls_verify}
        else:
            conn = client_settings_from_kubeconfig(args.kubeconfig)
            conn["token"] = args.token or conn["token"]
            conn["insecure"] = conn["insecure"] or args.insecure_skip_tls_verify
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):
                pass
        async with Client(conn["url"], token=conn["token"], ca_file=conn["ca_file"],
                          insecure=conn["insecure"], user_agent="pilothouse-scheduler/0.1") \
                as client:
            try:
                sched = Scheduler.from_config(config, client, profiles=args.profile or None,
                                              identity=args.identity)
            except ConfigError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 1
            await sched.run(stop)
        return 0
    from pilothouse._aio import run_async
    return run_async(main())


def add_scheduler_command(subparsers, common: argparse.ArgumentParser) -> None:
    """Register ``pilothouse scheduler`` on the CLI's subparsers."""
    p = subparsers.add_parser(
        "scheduler", parents=[common],
        help="run the scheduler host: bind pending pods with the configured profiles")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--server", help="API server URL (instead of a kubeconfig)")
    where.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, then "
                       "~/.kube/config)")
    p.add_argument("--token", help="bearer token for the API server")
    p.add_argument("--insecure-skip-tls-verify", action="store_true",
                   help="do not verify the server's certificate")
    p.add_argument("--profile", action="append", metavar="NAME",
                   help="serve only this schedulerName (repeatable; default: "
                   "components.scheduler.profiles, else every profile)")
    p.add_argument("--leader-elect", action="store_true",
                   help="campaign on a Lease first, so only one replica schedules")
    p.add_argument("--identity", help="this replica's identity in the Lease and in Events")
    p.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    p.set_defaults(handler=cmd_scheduler)
