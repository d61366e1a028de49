"""``python -m pilothouse_hollow_node [options]``: the same as ``pilothouse hollow-nodes``."""

import sys

from pilothouse_hollow_node._cli import main

if __name__ == "__main__":
    sys.exit(main())
