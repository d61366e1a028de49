"""Shared helpers for the plugin tests (``sched_testlib``) on sys.path."""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))
