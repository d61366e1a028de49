"""``python -m pilothouse.node --config FILE --server URL [--node-name N]``."""

import sys

from pilothouse.node._run import main

sys.exit(main())
