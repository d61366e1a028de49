"""The component processes of a one-node cluster and the commands that start them."""

from __future__ import annotations

import argparse
import dataclasses
import sys

__all__ = ["COMPONENTS", "Component", "cli_commands", "command_for"]


@dataclasses.dataclass(frozen=True)
class Component:
    """``name`` is the ``pilothouse`` command (and the pid/log file name); ``title`` is for
    messages; ``needs_server``: the command takes ``--server URL``."""

    name: str
    title: str
    needs_server: bool


COMPONENTS = (
    Component("apiserver", "the API server", needs_server=False),
    Component("scheduler", "the scheduler", needs_server=True),
    Component("controller-manager", "the controller manager", needs_server=True),
    Component("node", "the node agent", needs_server=True),
)


def cli_commands() -> set[str]:
    """The commands this installation's ``pilothouse`` CLI has (built-in and from plugins)."""
    from pilothouse.cli import build_parser
    parser = build_parser()
    for action in parser._actions:  # argparse keeps sub-parsers in a private action
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    return set()


def command_for(component: Component, config_path: str, server_url: str,
                commands: set[str]) -> list[str] | None:
    """The argv that starts ``component`` with ``config_path`` against ``server_url``
    (``python -m pilothouse.cli NAME --config ...``, the interpreter running ``up``); None
    when this installation's CLI has no such command (an older core)."""
    if component.name not in commands:
        return None
    tail = ["--config", config_path] + (["--server", server_url] if component.needs_server
                                        else [])
    return [sys.executable, "-m", "pilothouse.cli", component.name, *tail]
