"""Fixtures of the node agent's tests. Helpers live beside the tests (``node_fakes.py``,
``node_cluster.py``); pytest's importlib mode does not put this folder on ``sys.path``, so
this conftest does."""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
