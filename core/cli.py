"""The ``pilothouse`` command line.

Built-in commands are defined here; installed broadcast plugins add their own through the
``pilothouse_add_commands`` hook. Every command takes ``--config`` (see
:mod:`pilothouse.config` for the lookup order). Exit codes: 0 success, 1 the command's check
failed (invalid config, broken plugin), 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import sys

import yaml

from pilothouse import __version__
from pilothouse._aio import run_async
from pilothouse.config import ConfigError, load_config
from pilothouse.plugins import discover, implemented, load_plugins, make_plugin_manager

__all__ = ["build_parser", "main"]


def _active_names(config) -> set[tuple[str, str]]:
    active = {(r.slot, r.name) for r in config.all_refs()}
    disabled = config.disabled_plugins()
    active |= {("plugins", p.name) for p in discover(["plugins"], load=False)
               if p.name not in disabled}
    return active


def cmd_plugins_list(args) -> int:
    try:
        config = load_config(args.config)
        active = _active_names(config)
    except ConfigError as exc:
        print(f"warning: {exc}; showing no plugin as active", file=sys.stderr)
        active = set()
    pm = make_plugin_manager()
    rows = []
    for p in discover():
        impl = implemented(p.slot, p.obj, pm) if p.error is None else []
        rows.append({"slot": p.slot, "group": p.group, "name": p.name,
                     "distribution": p.distribution, "version": p.version,
                     "active": (p.slot, p.name) in active, "implements": impl,
                     "target": p.target, "error": p.error})
    if args.output == "json":
        print(json.dumps({"plugins": rows}, indent=2))
    else:
        head = ("SLOT", "NAME", "DISTRIBUTION", "VERSION", "ACTIVE", "IMPLEMENTS")
        table = [head] + [(r["slot"], r["name"], r["distribution"], r["version"],
                           "yes" if r["active"] else "no",
                           f"ERROR: {r['error']}" if r["error"] else ", ".join(r["implements"]))
                          for r in rows]
        widths = [max(len(row[i]) for row in table) for i in range(len(head) - 1)]
        for row in table:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1])
    broken_active = [r for r in rows if r["error"] and r["active"]]
    return 1 if broken_active else 0


def cmd_config_check(args) -> int:
    try:
        loaded = load_plugins(load_config(args.config))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    cfg = loaded.config
    print(f"{cfg.source}: ok")
    for slot in ("store", "runtime", "network", "proxy"):
        lp = loaded.drivers.get(slot)
        print(f"  {slot:<14} {lp.ref.name + ' (' + lp.installed.distribution + ' ' + lp.installed.version + ')' if lp else '(none configured)'}")
    for section, plugins in loaded.pipelines.items():
        print(f"  {section:<14} {', '.join(lp.ref.name for lp in plugins) or '(none)'}")
    for name, plugins in loaded.profiles.items():
        listing = ", ".join(f"{lp.ref.name}(weight {lp.ref.weight})" for lp in plugins)
        print(f"  scheduler      {name}: {listing or '(no plugins)'}")
    print(f"  controllers    {', '.join(lp.ref.name for lp in loaded.controllers) or '(none)'}")
    print(f"  hook plugins   {', '.join(p.name for p in loaded.hook_plugins) or '(none)'}")
    return 0


def cmd_config_show(args) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"# effective config from {config.source}")
    print(yaml.safe_dump(config.raw, sort_keys=False), end="")
    return 0


def cmd_apiserver(args) -> int:
    import logging

    from pilothouse.apiserver.run import serve
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        run_async(serve(load_config(args.config)))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_controller_manager(args) -> int:
    import logging

    from pilothouse.controllers._host import run_controller_host
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        run_async(run_controller_host(load_config(args.config), args.server,
                                      identity=args.identity, handle_signals=True))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_version(args) -> int:
    print(f"pilothouse {__version__}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The CLI parser: built-in commands plus those contributed by installed plugins."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=argparse.SUPPRESS, help="config file (default: $PILOTHOUSE_CONFIG, then "
                        "~/.config/pilothouse/config.yaml, then the built-in default profile)")
    parser = argparse.ArgumentParser(prog="pilothouse", parents=[common],
                                     description="Kubernetes-compatible orchestrator whose "
                                     "every behaviour is a plugin.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("version", help="print the version", parents=[common]).set_defaults(
        handler=cmd_version)
    plugins = sub.add_parser("plugins", help="installed plugins").add_subparsers(
        dest="subcommand", metavar="SUBCOMMAND", required=True)
    lister = plugins.add_parser("list", parents=[common], help="list installed plugins, "
                                "their slot, distribution, version, and what they implement")
    lister.add_argument("--output", "-o", choices=("table", "json"), default="table")
    lister.set_defaults(handler=cmd_plugins_list)
    config = sub.add_parser("config", help="check or show the config").add_subparsers(
        dest="subcommand", metavar="SUBCOMMAND", required=True)
    config.add_parser("check", parents=[common], help="validate the config by loading every "
                      "plugin it names").set_defaults(handler=cmd_config_check)
    config.add_parser("show", parents=[common], help="print the effective config "
                      "(default profile merged)").set_defaults(handler=cmd_config_show)
    sub.add_parser("apiserver", parents=[common], help="run the API server with the configured "
                   "store, authentication, authorization and admission plugins").set_defaults(
        handler=cmd_apiserver)
    cm = sub.add_parser("controller-manager", parents=[common], help="run the controller host: "
                        "every enabled controller, each under its own leader-election Lease")
    cm.add_argument("--server", required=True, help="API server URL")
    cm.add_argument("--identity", default=None,
                    help="leader-election identity (default: <host name>_<pid>)")
    cm.set_defaults(handler=cmd_controller_manager)
    from pilothouse._image_cli import add_image_commands
    from pilothouse.cluster._cli import add_cluster_commands
    from pilothouse.node._run import add_node_command
    from pilothouse.scheduler._cli import add_scheduler_command
    add_image_commands(sub, common)
    add_scheduler_command(sub, common)
    add_node_command(sub, common)
    add_cluster_commands(sub, common)
    builtin = set(sub.choices)
    pm = make_plugin_manager()
    for plugin in discover(["plugins"]):
        if plugin.error is None:
            pm.register(plugin.obj, name=f"plugins:{plugin.name}")
    before = set(sub.choices)
    pm.hook.pilothouse_add_commands(subparsers=sub)
    clash = builtin & (set(sub.choices) - before)
    if clash:
        raise SystemExit(f"error: a plugin redefines built-in command(s) {sorted(clash)}")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.config = getattr(args, "config", None)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return args.handler(args) or 0
    except BrokenPipeError:  # `pilothouse plugins list | head`: the reader left; not an error
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
