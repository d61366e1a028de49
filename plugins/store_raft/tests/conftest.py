"""pytest setup for the store_raft tests: the support modules beside this file are
importable, and the ``run`` fixture runs a coroutine on a fresh event loop."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def run():
    """Run a coroutine to completion on a fresh event loop."""
    def runner(coro, timeout: float = 120.0):
        return asyncio.run(asyncio.wait_for(coro, timeout))
    return runner
