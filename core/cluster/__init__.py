"""``pilothouse.cluster``: ``pilothouse up``, ``down`` and ``status`` for a one-node cluster.

``up`` runs each component as its own detached process, exactly as a user would start it by
hand (``pilothouse apiserver|scheduler|controller-manager|node --config FILE``), all reading
one generated config in a state directory (see :mod:`pilothouse.cluster._state` for the
layout and :mod:`pilothouse.cluster._config` for what the config fills in). It prints a
progress line per step on stderr::

    [1/7] writing the config /var/lib/pilothouse/config.yaml ... written (0.0 s)
    [2/7] checking dependencies (system packages, Python plugins) ... ok (0.3 s)
    [3/7] starting the API server on http://127.0.0.1:6443 ... ok (0.9 s)
    [4/7] making the image pilothouse.local/busybox:1 available to the runtime ... ok (1.6 s)
    [5/7] starting the scheduler ... ok (1.5 s)
    [6/7] starting the controller manager ... ok (1.5 s)
    [7/7] starting the node agent ... ok, node host-1 Ready (2.4 s)

Running it again starts only what is not running (pid files whose process is gone are
removed) and leaves the rest alone. ``down`` stops the components by PID (SIGTERM, then
SIGKILL after a timeout), then the pods and the runtime, and keeps the data unless
``--purge``. ``status`` shows each component and the plugin active in each slot.

Python use::

    from pilothouse.cluster import ClusterSettings, up, down, status
    up(ClusterSettings(api_port=16443), "/tmp/cluster")   # exit code, like the command
    status("/tmp/cluster")
    down("/tmp/cluster", purge=True)

Since 0.1.
"""

from pilothouse.cluster._cli import add_cluster_commands, cmd_down, cmd_status, cmd_up
from pilothouse.cluster._config import ClusterSettings
from pilothouse.cluster._down import down
from pilothouse.cluster._state import StateDir, default_state_dir
from pilothouse.cluster._status import collect, status
from pilothouse.cluster._up import up

__all__ = ["ClusterSettings", "StateDir", "add_cluster_commands", "cmd_down", "cmd_status",
           "cmd_up", "collect", "default_state_dir", "down", "status", "up"]
