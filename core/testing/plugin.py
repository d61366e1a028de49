"""The pytest plugin shipped with pilothouse (entry point ``pytest11``).

Fixtures:

``pilothouse_config``
    A function ``(doc: dict, base="default") -> Config`` that parses and structurally
    validates a config document (the default profile merged unless ``base="none"``).
``pilothouse_plugins``
    A function ``(doc: dict) -> LoadedPlugins`` that loads every plugin the config
    activates, failing the test with the config errors if any.
``load_driver``
    :func:`pilothouse.testing.build_driver`: ``(slot, name_or_class, options) -> driver``.
"""

from __future__ import annotations

import pytest

from pilothouse.config import parse_config
from pilothouse.plugins import load_plugins
from pilothouse.testing._drivers import build_driver


@pytest.fixture
def pilothouse_config():
    def make(doc: dict | None = None, base: str = "default"):
        return parse_config({**(doc or {}), "base": base}, "<test config>")
    return make


@pytest.fixture
def pilothouse_plugins(pilothouse_config):
    def make(doc: dict | None = None, base: str = "default"):
        return load_plugins(pilothouse_config(doc, base))
    return make


@pytest.fixture
def load_driver():
    return build_driver
