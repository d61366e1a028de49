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
``apiserver`` (module scope) and ``start_apiserver`` (factory)
    a real API server on a free loopback port with a kubeconfig, for tests with real
    kubectl and the official Python client; see :mod:`pilothouse.testing.cluster`.
"""

from __future__ import annotations

import pytest

# the conformance suites live in an installed package: let pytest explain their asserts
pytest.register_assert_rewrite("pilothouse.testing.store", "pilothouse.testing.runtime")

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


@pytest.fixture(scope="module")
def apiserver(tmp_path_factory):
    """A real API server (memory store, default profile otherwise) for the test module."""
    from pilothouse.testing.cluster import APIServerThread
    server = APIServerThread(workdir=str(tmp_path_factory.mktemp("apiserver"))).start()
    yield server
    server.stop()


@pytest.fixture
def start_apiserver(tmp_path):
    """Factory: ``start_apiserver(config_doc=None)`` starts an API server with the plugins
    the document names; all are stopped after the test."""
    from pilothouse.testing.cluster import APIServerThread
    started = []

    def start(config_doc: dict | None = None):
        server = APIServerThread(config_doc, workdir=str(tmp_path / f"api{len(started)}"))
        started.append(server)
        return server.start()
    yield start
    for server in started:
        server.stop()
