"""Make the template importable from its source folder for the unit tests."""

import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parents[1]
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
