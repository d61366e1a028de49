"""Construct plugins for tests, through entry points or straight from a class."""

from __future__ import annotations

from typing import Any

from pilothouse._options import build_options
from pilothouse.config import ConfigError, parse_config
from pilothouse.plugins import load_plugins


def build_driver(slot: str, plugin: str | type, options: dict | None = None) -> Any:
    """Return a constructed driver for ``slot``.

    ``plugin`` is an entry-point name (loaded exactly as the config would load it, with
    option checking) or a class (constructed directly, bypassing entry points, for a plugin
    under development that is not installed yet). Raises :class:`ConfigError` on bad input.
    """
    if isinstance(plugin, str):
        config = parse_config({"base": "none", slot: {"plugin": plugin, "options": options or {}}},
                              f"<test {slot}={plugin}>")
        return load_plugins(config).driver(slot)
    options_cls = getattr(plugin, "Options", None)
    built, errors = build_options(options_cls, options or {}, f"{slot} plugin {plugin.__name__}")
    if errors:
        raise ConfigError(errors, "<test>")
    return plugin(built) if options_cls is not None else plugin()
