"""The config ``pilothouse up`` writes for its components.

It starts from the user's effective config (``--config``, ``$PILOTHOUSE_CONFIG``,
``~/.config/pilothouse/config.yaml`` or the built-in default profile) and fills in only what a
one-node cluster needs and the user left open:

* ``store``: ``data_dir`` under the state directory when the store is ``raft`` and none is set;
* ``runtime``: ``containerd`` with a private daemon (``manage: true``) under the state
  directory when the slot is empty; for a configured ``containerd`` without ``endpoint``, the
  same defaults where options are missing;
* ``controllers.enabled``: every installed controller when the config enables none (the
  default profile enables none, so that the controller set is whatever is installed);
* ``components.apiserver`` / ``components.node``: addresses, ports, data directories, the
  node's name and pod CIDR, the kubeconfig path (the state directory's);
* ``components.controller-manager.leaderElect: false`` unless set: ``up`` runs one
  controller host per cluster, and a restarted host should not wait out its old Lease.

Command-line flags of ``up`` override the config; the config overrides ``up``'s defaults.
The result is written with ``base: none`` so that the file alone says what runs.
"""

from __future__ import annotations

import copy
import dataclasses
import socket

from pilothouse.config import Config
from pilothouse.cluster._state import StateDir

__all__ = ["ClusterSettings", "api_url", "cluster_config", "node_name"]


@dataclasses.dataclass
class ClusterSettings:
    """What ``up`` was asked for. None: not given (the config's value or the default)."""

    config: str | None = None          # the user's config file, if any
    api_address: str | None = None
    api_port: int | None = None
    node_name: str | None = None
    node_port: int | None = None
    pod_cidr: str | None = None
    bridge: str | None = None
    image: str | None = None
    kubeconfig: str | None = None      # where ``up`` merges the user's kubeconfig entry

    DEFAULTS = {"api_address": "127.0.0.1", "api_port": 6443, "node_port": 10250,
                "pod_cidr": "10.244.0.0/24", "bridge": "ph0",
                "image": "pilothouse.local/busybox:1", "kubeconfig": "~/.kube/config"}

    def merged(self, saved: dict) -> "ClusterSettings":
        """These settings, with what was not given taken from an earlier ``up``'s."""
        out = dataclasses.replace(self)
        for f in dataclasses.fields(self):
            if getattr(out, f.name) is None and saved.get(f.name) is not None:
                setattr(out, f.name, saved[f.name])
        return out

    def get(self, name: str):
        value = getattr(self, name)
        if value is None and name == "node_name":
            return socket.gethostname().lower()
        return self.DEFAULTS.get(name) if value is None else value

    def to_json(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) is not None}


def _section(doc: dict, name: str) -> dict:
    value = doc.get(name)
    if not isinstance(value, dict):
        value = {}
        doc[name] = value
    return value


def _put(target: dict, key: str, flag_value, default) -> None:
    """A flag given on the command line wins; else the config's value stays; else default."""
    if flag_value is not None:
        target[key] = flag_value
    elif target.get(key) in (None, ""):
        target[key] = default


def cluster_config(user: Config, state: StateDir, settings: ClusterSettings,
                   installed_controllers: list[str]) -> dict:
    """The config document for every component of the cluster in ``state``."""
    s = settings
    doc = copy.deepcopy(user.raw)
    doc.pop("base", None)

    store = _section(doc, "store")
    if store.get("plugin") == "raft":
        options = store.setdefault("options", {}) or {}
        store["options"] = options
        options.setdefault("data_dir", str(state.root / "store"))

    runtime = _section(doc, "runtime")
    if not runtime.get("plugin"):
        runtime["plugin"] = "containerd"
        runtime["options"] = {}
    if runtime["plugin"] == "containerd":
        options = runtime.get("options") or {}
        runtime["options"] = options
        if not options.get("endpoint"):
            options.setdefault("manage", True)
            options.setdefault("data_dir", str(state.root / "containerd"))
            _put(options, "pod_cidr", s.pod_cidr, s.get("pod_cidr"))
            _put(options, "bridge", s.bridge, s.get("bridge"))

    controllers = _section(doc, "controllers")
    if not controllers.get("enabled"):
        controllers["enabled"] = list(installed_controllers)

    components = _section(doc, "components")
    api = components.setdefault("apiserver", {}) or {}
    components["apiserver"] = api
    _put(api, "address", s.api_address, s.get("api_address"))
    _put(api, "port", s.api_port, s.get("api_port"))
    api["kubeconfig"] = str(state.kubeconfig)

    # One controller host per state directory (``up`` never starts a second one), so
    # leader election would only delay a restarted host by a lease duration.
    manager = components.setdefault("controller-manager", {}) or {}
    components["controller-manager"] = manager
    manager.setdefault("leaderElect", False)

    node = components.setdefault("node", {}) or {}
    components["node"] = node
    _put(node, "nodeName", s.node_name, s.get("node_name"))
    _put(node, "port", s.node_port, s.get("node_port"))
    node.setdefault("dataDir", str(state.root / "node"))
    pod_cidr = (runtime.get("options") or {}).get("pod_cidr") \
        if runtime["plugin"] == "containerd" else None
    _put(node, "podCIDR", s.pod_cidr, pod_cidr or s.get("pod_cidr"))
    return {"base": "none", **doc}


def api_url(doc: dict) -> str:
    """The URL components and users reach the API server at."""
    api = doc["components"]["apiserver"]
    host = api.get("address") or "127.0.0.1"
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{api.get('port')}"


def node_name(doc: dict) -> str:
    return str(doc["components"]["node"].get("nodeName") or socket.gethostname()).lower()
