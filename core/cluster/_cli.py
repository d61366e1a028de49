"""The ``up``, ``down`` and ``status`` commands of the ``pilothouse`` CLI."""

from __future__ import annotations

import argparse

from pilothouse.cluster._config import ClusterSettings

__all__ = ["add_cluster_commands", "cmd_down", "cmd_status", "cmd_up"]

_STATE_HELP = ("the cluster's state directory (default: $PILOTHOUSE_STATE_DIR, else "
               "/var/lib/pilothouse as root, else ~/.local/share/pilothouse)")


def cmd_up(args) -> int:
    from pilothouse.cluster._up import up
    settings = ClusterSettings(config=args.config, api_address=args.api_address,
                               api_port=args.api_port, node_name=args.node_name,
                               node_port=args.node_port, pod_cidr=args.pod_cidr,
                               bridge=args.bridge, image=args.image,
                               kubeconfig=args.kubeconfig)
    return up(settings, args.state_dir, dry_run=args.dry_run, install=not args.no_install)


def cmd_down(args) -> int:
    from pilothouse.cluster._down import down
    return down(args.state_dir, purge=args.purge, keep_pods=args.keep_pods,
                timeout=args.timeout)


def cmd_status(args) -> int:
    from pilothouse.cluster._status import status
    return status(args.state_dir, output=args.output)


def add_cluster_commands(subparsers, common: argparse.ArgumentParser | None = None) -> None:
    """Add ``pilothouse up``, ``down`` and ``status`` to the CLI's sub-parsers."""
    parents = [common] if common is not None else []
    up = subparsers.add_parser(
        "up", parents=parents,
        help="start a one-node cluster (store, API server, scheduler, controllers, node "
             "agent) with the embedded defaults; installs what is missing; safe to re-run",
        description="Start every component of a one-node cluster that is not running yet, "
                    "each as its own process, and write the kubeconfig. --config names "
                    "your config (plugins per slot); what it leaves open gets the defaults "
                    "of a one-node cluster.")
    if common is None:
        up.add_argument("--config", default=None, help="your config file")
    up.add_argument("--state-dir", default=None, help=_STATE_HELP)
    up.add_argument("--api-address", default=None,
                    help="API server listen address (default 127.0.0.1)")
    up.add_argument("--api-port", type=int, default=None, help="API server port (default 6443)")
    up.add_argument("--node-name", default=None, help="the Node's name (default: host name)")
    up.add_argument("--node-port", type=int, default=None,
                    help="node agent endpoint port (default 10250)")
    up.add_argument("--pod-cidr", default=None, help="the node's pod CIDR (default "
                    "10.244.0.0/24)")
    up.add_argument("--bridge", default=None, help="the pod network bridge (default ph0)")
    up.add_argument("--image", default=None,
                    help="reference of the busybox image made available to pods (default "
                         "pilothouse.local/busybox:1)")
    up.add_argument("--kubeconfig", default=None,
                    help="kubeconfig to add the 'pilothouse' context to (default "
                         "~/.kube/config; '-' for none; the state directory always has one)")
    up.add_argument("--dry-run", action="store_true",
                    help="print the plan (config, installs, commands) and change nothing")
    up.add_argument("--no-install", action="store_true",
                    help="do not install missing packages; say what to install instead")
    up.set_defaults(handler=cmd_up)

    down = subparsers.add_parser(
        "down", parents=parents,
        help="stop the cluster's components (SIGTERM, then SIGKILL) and its pods; keeps "
             "the data unless --purge")
    down.add_argument("--state-dir", default=None, help=_STATE_HELP)
    down.add_argument("--purge", action="store_true",
                      help="also delete the state directory (store, images, runtime data)")
    down.add_argument("--keep-pods", action="store_true",
                      help="leave the pods' containers running in the runtime")
    down.add_argument("--timeout", type=float, default=15.0,
                      help="seconds to wait after SIGTERM before SIGKILL (default 15)")
    down.set_defaults(handler=cmd_down)

    status = subparsers.add_parser(
        "status", parents=parents,
        help="show the cluster's components (running or not, pid, URL) and the active "
             "plugin in each slot")
    status.add_argument("--state-dir", default=None, help=_STATE_HELP)
    status.add_argument("--output", "-o", choices=("table", "json"), default="table")
    status.set_defaults(handler=cmd_status)
