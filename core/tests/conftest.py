"""Fixtures for the core's own tests."""

import os
import pathlib
import time
import textwrap

import pytest


@pytest.fixture
def fake_dist(tmp_path, monkeypatch):
    """Install a throwaway distribution on sys.path: ``fake_dist(name, entry_points,
    modules)`` where ``entry_points`` is ``{group: {name: "module:attr"}}`` and ``modules``
    maps file names to source. Returns the directory (usable as PYTHONPATH for subprocesses).
    """
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))

    def make(name, entry_points, modules, version="1.2.3"):
        for filename, source in modules.items():
            (site / filename).write_text(textwrap.dedent(source))
        info = site / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        lines = []
        for group, eps in entry_points.items():
            lines.append(f"[{group}]")
            lines += [f"{k} = {v}" for k, v in eps.items()]
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
        import importlib

        import stevedore
        from stevedore import _cache
        importlib.invalidate_caches()
        # stevedore memoises entry points in-process (per namespace and per sys.path)
        stevedore.ExtensionManager.ENTRY_POINT_CACHE.clear()
        _cache._c._internal.clear()
        # ... and on disk by path mtimes, which coarse kernel clocks can leave unchanged
        make.calls += 1
        stamp = time.time_ns() + make.calls * 10_000_000
        os.utime(site, ns=(stamp, stamp))
        return site
    make.calls = 0
    return make


@pytest.fixture
def repo_root():
    return pathlib.Path(__file__).resolve().parents[2]


FAKE_STORE_SOURCE = '''
import dataclasses
from pilothouse.interfaces.store import Store
from pilothouse.hooks import hookimpl

class GoodStore(Store):
    @dataclasses.dataclass
    class Options:
        path: str
        sync: bool = True
    def __init__(self, options):
        self.options = options
    async def open(self): pass
    async def close(self): pass
    async def current_revision(self): return 0
    async def get(self, key, *, revision=0): return None
    async def list(self, prefix, *, revision=0, limit=0, start_after=None): pass
    async def create(self, key, value): pass
    async def update(self, key, value, *, expected_revision): pass
    async def delete(self, key, *, expected_revision=0): pass
    def watch(self, prefix, *, after_revision, progress_interval=None): pass
    async def compact(self, revision): pass
    @hookimpl
    def pilothouse_configure(self, config):
        CALLS.append(("store", config.source))

class HalfStore:
    async def open(self): pass

CALLS = []
'''


@pytest.fixture
def fake_store_source():
    """Source of a module ``fakestore`` with a valid Store plugin (``GoodStore``, which also
    implements a broadcast hook) and an incomplete one (``HalfStore``)."""
    return FAKE_STORE_SOURCE
