"""Broadcast hooks of the hollow node: the ``pilothouse hollow-nodes`` command.

Registered under the ``pilothouse.plugins`` entry-point group (name ``hollow-nodes``): a node
simulator is not a driver of any slot, so it contributes a command instead.
"""

from __future__ import annotations

from pilothouse.hooks import hookimpl

from pilothouse_hollow_node._cli import add_arguments, run


@hookimpl
def pilothouse_add_commands(subparsers):
    parser = subparsers.add_parser(
        "hollow-nodes", help="run many simulated nodes against an API server "
        "(from pilothouse-hollow-node)",
        description="Register N simulated nodes, keep their Leases fresh and report the pods "
        "bound to them as Running.")
    add_arguments(parser)
    parser.set_defaults(handler=run)
