"""The component processes of a one-node cluster and the commands that start them."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys

__all__ = ["COMPONENTS", "Component", "by_name", "cli_commands", "command_for"]


@dataclasses.dataclass(frozen=True)
class Component:
    """``name`` is the ``pilothouse`` command (and the pid/log file name); ``title`` is for
    messages; ``needs_server``: the command takes ``--server URL``; ``fallback``: a
    ``module:attr`` that :mod:`pilothouse.cluster._launch` can run when this installation's
    CLI does not have the command yet."""

    name: str
    title: str
    needs_server: bool
    fallback: str | None = None


COMPONENTS = (
    Component("apiserver", "the API server", needs_server=False),
    Component("scheduler", "the scheduler", needs_server=True,
              fallback="pilothouse.scheduler:run_scheduler"),
    Component("controller-manager", "the controller manager", needs_server=True,
              fallback="pilothouse.controllers:run_controller_host"),
    Component("node", "the node agent", needs_server=True,
              fallback="pilothouse.node:run_node_agent"),
)


def by_name(name: str) -> Component:
    return next(c for c in COMPONENTS if c.name == name)


def cli_commands() -> set[str]:
    """The commands this installation's ``pilothouse`` CLI has (built-in and from plugins)."""
    from pilothouse.cli import build_parser
    parser = build_parser()
    for action in parser._actions:  # argparse keeps sub-parsers in a private action
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    return set()


def _importable(target: str) -> bool:
    module, _, attr = target.partition(":")
    try:
        return hasattr(importlib.import_module(module), attr)
    except ImportError:
        return False


def command_for(component: Component, config_path: str, server_url: str,
                commands: set[str]) -> list[str] | None:
    """The argv that starts ``component`` with ``config_path`` against ``server_url``; None
    when this installation cannot run it. The CLI command is used when it exists
    (``python -m pilothouse.cli NAME --config ...``, the same interpreter as ``up``)."""
    tail = ["--config", config_path] + (["--server", server_url] if component.needs_server
                                        else [])
    if component.name in commands:
        return [sys.executable, "-m", "pilothouse.cli", component.name, *tail]
    if component.fallback and _importable(component.fallback):
        return [sys.executable, "-m", "pilothouse.cluster._launch", component.name, *tail]
    return None
