"""The command line: ``python -m pilothouse_hollow_node`` and ``pilothouse hollow-nodes``.

Prints one line to stdout when every node is registered and served (``hollow-nodes: ready
...``), a summary every ``--stats-interval`` seconds to stderr, and stops on SIGINT/SIGTERM
(deleting its Nodes and Leases with ``--delete-on-exit``). Exit codes: 0 after a signal,
1 when the API server cannot be reached or the options are invalid.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import pathlib
import signal
import sys

import yaml

from pilothouse.client import Client
from pilothouse.model import errors

from pilothouse_hollow_node._nodes import HollowNodes, Options, parse_taint

__all__ = ["add_arguments", "build_parser", "main", "run"]


def _label(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"label {text!r}: expected key=value")
    return key, value


def _taint(text: str) -> dict:
    try:
        return parse_taint(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options shared by both entry points."""
    where = p.add_argument_group("API server")
    where.add_argument("--server", help="API server URL (default: the kubeconfig's)")
    where.add_argument("--kubeconfig", help="kubeconfig (default: $KUBECONFIG, then "
                       "~/.kube/config); used when --server is not given")
    where.add_argument("--token", help="bearer token")
    where.add_argument("--insecure-skip-tls-verify", action="store_true")
    shape = p.add_argument_group("nodes")
    shape.add_argument("--nodes", type=int, default=1, help="how many nodes (default 1)")
    shape.add_argument("--cpu", default="4", help="cpu capacity per node (default 4)")
    shape.add_argument("--memory", default="32Gi", help="memory per node (default 32Gi)")
    shape.add_argument("--pods", type=int, default=110, help="pod capacity (default 110)")
    shape.add_argument("--zones", type=int, default=0, help="spread the nodes over this many "
                       "topology.kubernetes.io/zone values zone-0..zone-K-1 (default none)")
    shape.add_argument("--region", help="topology.kubernetes.io/region of every node")
    shape.add_argument("--label", type=_label, action="append", default=[],
                       metavar="KEY=VALUE", help="extra label on every node (repeatable)")
    shape.add_argument("--taint", type=_taint, action="append", default=[],
                       metavar="KEY[=VALUE]:EFFECT", help="taint on every node (repeatable)")
    shape.add_argument("--prefix", default="hollow-node",
                       help="node names are PREFIX-I (default hollow-node)")
    shape.add_argument("--start-index", type=int, default=0,
                       help="first I (to run several processes side by side)")
    work = p.add_argument_group("cadence")
    work.add_argument("--lease-interval", type=float, default=10.0,
                      help="seconds between renewals of each Lease (default 10, the "
                      "kubelet's)")
    work.add_argument("--lease-duration", type=int, default=40,
                      help="leaseDurationSeconds written in each Lease (default 40)")
    work.add_argument("--status-interval", type=float, default=300.0,
                      help="seconds between Node status heartbeats (default 300; 0: never)")
    work.add_argument("--workers", type=int, default=32,
                      help="concurrent pod status writes and deletes (default 32)")
    work.add_argument("--concurrency", type=int, default=64,
                      help="concurrent registrations and lease renewals (default 64)")
    out = p.add_argument_group("process")
    out.add_argument("--stats-interval", type=float, default=0.0,
                     help="print a summary to stderr every this many seconds (default never)")
    out.add_argument("--delete-on-exit", action="store_true",
                     help="delete the Nodes and Leases when stopped")
    out.add_argument("--no-gc-tuning", action="store_true",
                     help="keep Python's default garbage-collector settings (by default the "
                     "process raises the thresholds and freezes its start-up objects)")
    out.add_argument("--verbose", "-v", action="store_true", help="debug logging")


def _connection(args: argparse.Namespace) -> dict:
    if args.server:
        return {"url": args.server, "token": args.token, "ca_file": None,
                "insecure": args.insecure_skip_tls_verify}
    path = args.kubeconfig or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] \
        or "~/.kube/config"
    try:
        doc = yaml.safe_load(pathlib.Path(os.path.expanduser(path)).read_text()) or {}
    except OSError as exc:
        raise SystemExit(f"hollow-nodes: no --server and cannot read kubeconfig {path}: "
                         f"{exc.strerror}")

    def named(section: str, name: str | None) -> dict:
        return next((e.get(section[:-1]) or {} for e in doc.get(section) or []
                     if e.get("name") == name), {})
    context = named("contexts", doc.get("current-context"))
    cluster, user = named("clusters", context.get("cluster")), named("users", context.get("user"))
    if not cluster.get("server"):
        raise SystemExit(f"hollow-nodes: kubeconfig {path}: the current context has no server")
    return {"url": cluster["server"], "token": args.token or user.get("token"),
            "ca_file": cluster.get("certificate-authority"),
            "insecure": args.insecure_skip_tls_verify or
            bool(cluster.get("insecure-skip-tls-verify"))}


def options_from_args(args: argparse.Namespace) -> Options:
    return Options(count=args.nodes, cpu=args.cpu, memory=args.memory, pods=args.pods,
                   zones=args.zones, region=args.region, labels=dict(args.label),
                   taints=list(args.taint), prefix=args.prefix, start_index=args.start_index,
                   lease_interval=args.lease_interval, lease_duration=args.lease_duration,
                   status_interval=args.status_interval, workers=args.workers,
                   concurrency=args.concurrency)


async def serve(args: argparse.Namespace, stop: asyncio.Event | None = None) -> int:
    """Run the nodes the arguments describe until ``stop`` is set or a signal arrives."""
    try:
        opts = options_from_args(args)
    except ValueError as exc:
        print(f"hollow-nodes: {exc}", file=sys.stderr)
        return 1
    conn = _connection(args)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with Client(conn["url"], token=conn["token"], ca_file=conn["ca_file"],
                      insecure=conn["insecure"], user_agent="pilothouse-hollow-node/0.1") \
            as client:
        nodes = HollowNodes(client, opts)
        starting = asyncio.create_task(nodes.start())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait([starting, stopping], return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not starting.done():  # a signal during registration
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
            await nodes.stop(delete=args.delete_on_exit)
            return 0
        try:
            starting.result()
        except (errors.ServiceUnavailable, errors.StatusError) as exc:
            print(f"hollow-nodes: cannot register nodes on {conn['url']}: {exc}",
                  file=sys.stderr)
            await nodes.stop()
            return 1
        if not args.no_gc_tuning:
            # everything registered so far lives as long as the process: keep the collector
            # from traversing it again and again
            gc.collect()
            gc.freeze()
        last = opts.start_index + opts.count - 1
        print(f"hollow-nodes: ready: {opts.count} nodes {opts.prefix}-{opts.start_index}.."
              f"{opts.prefix}-{last} on {conn['url']} (registered in "
              f"{nodes.stats['registration_ms'] / 1000:.1f} s)", flush=True)
        try:
            while not stop.is_set():
                interval = args.stats_interval or 3600.0
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), interval)
                if args.stats_interval:
                    print(f"hollow-nodes: {nodes.summary()}", file=sys.stderr, flush=True)
        finally:
            await nodes.stop(delete=args.delete_on_exit)
            print(f"hollow-nodes: stopped: {nodes.summary()}", file=sys.stderr, flush=True)
    return 0


def run(args: argparse.Namespace) -> int:
    """The command handler: run :func:`serve` on uvloop when it is installed."""
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if not args.no_gc_tuning:
        # The informer cache (every bound pod) and the watch decoding keep many containers
        # alive; with the default thresholds full collections of that heap ran every few
        # seconds and took up to a second each (measured with 5,000 nodes, 10,000 pods).
        # The process creates no reference cycles of its own, so collect rarely.
        gc.set_threshold(50_000, 20, 100)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(serve(args))
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(serve(args))


def build_parser(prog: str = "python -m pilothouse_hollow_node") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Run many simulated (hollow) nodes "
                                "against a Pilothouse or Kubernetes API server.")
    add_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))
