"""``pilothouse status``: each component of a cluster (running or not, pid, URL) and the
plugin active in each slot of its config."""

from __future__ import annotations

import json
import os
import sys

from pilothouse.cluster import _api
from pilothouse.cluster._components import COMPONENTS
from pilothouse.cluster._config import api_url, node_name
from pilothouse.cluster._state import StateDir, default_state_dir
from pilothouse.config import ConfigError, load_config

__all__ = ["collect", "status"]


def _installed() -> dict[tuple[str, str], str]:
    from pilothouse.plugins import discover
    return {(p.slot, p.name): f"{p.distribution} {p.version}"
            for p in discover(load=False)}


def _plugins(config, installed) -> list[dict]:
    def row(slot: str, label: str, names: list[str]) -> dict:
        return {"slot": label, "plugins": [
            {"name": n, "installed": installed.get((slot, n), "NOT INSTALLED")}
            for n in names]}
    rows = []
    for slot in ("store", "runtime", "network", "proxy"):
        ref = config.driver(slot)
        rows.append(row(slot, slot, [ref.name] if ref else []))
    for section, slot in (("admission", "admission"), ("authentication", "authn"),
                          ("authorization", "authz")):
        rows.append(row(slot, section, [r.name for r in config.pipeline(section)]))
    for profile, refs in config.scheduler_profiles().items():
        rows.append(row("scheduler", f"scheduler ({profile})", [r.name for r in refs]))
    rows.append(row("controllers", "controllers", [r.name for r in config.controllers()]))
    disabled = config.disabled_plugins()
    hooks = sorted(n for (s, n) in installed if s == "plugins" and n not in disabled)
    rows.append(row("plugins", "hook plugins", hooks))
    return rows


def collect(state: StateDir) -> dict:
    """Everything ``status`` shows, as a document (``-o json`` prints it)."""
    doc: dict = {"stateDir": str(state.root), "config": str(state.config),
                 "exists": state.exists(), "components": [], "plugins": []}
    if not state.exists():
        return doc
    try:
        config = load_config(state.config)
    except ConfigError as exc:
        doc["error"] = str(exc)
        return doc
    raw = config.raw
    url = api_url(raw)
    api_up = _api.ready(url)
    for comp in COMPONENTS:
        rec = state.record(comp.name)
        running = rec is not None and rec.alive()
        entry = {"name": comp.name, "state": "running" if running else "stopped",
                 "pid": rec.pid if running else None, "url": None, "detail": ""}
        if rec is not None and not running:
            entry["detail"] = f"stale pid file (pid {rec.pid} is gone)"
        if comp.name == "apiserver":
            entry["url"] = url
            entry["detail"] = "ready" if api_up else ("not answering" if running else
                                                     entry["detail"])
        elif comp.name == "node":
            node = raw["components"]["node"]
            entry["url"] = f"http://{node.get('address') or '0.0.0.0'}:{node.get('port')}"
            if api_up:
                entry["detail"] = _api.node_ready(url, node_name(raw))[1]
        doc["components"].append(entry)
    doc["plugins"] = _plugins(config, _installed())
    return doc


def status(state_dir: str | os.PathLike | None = None, *, output: str = "table",
           out=None) -> int:
    """Print the cluster's status; 0 when every component runs, 1 otherwise."""
    out = out or sys.stdout
    state = StateDir(state_dir or default_state_dir())
    doc = collect(state)
    all_running = bool(doc["components"]) and all(
        c["state"] == "running" for c in doc["components"])
    if output == "json":
        print(json.dumps(doc, indent=2), file=out)
        return 0 if all_running else 1
    if not doc["exists"]:
        print(f"no cluster in {state.root} (start one with `pilothouse up`)", file=out)
        return 1
    if doc.get("error"):
        print(f"error: {doc['error']}", file=out)
        return 1
    print(f"cluster in {doc['stateDir']} (config {doc['config']})", file=out)
    table = [("COMPONENT", "STATE", "PID", "URL", "DETAIL")]
    for c in doc["components"]:
        table.append((c["name"], c["state"], str(c["pid"] or "-"), c["url"] or "-",
                      c["detail"]))
    _print_table(table, out)
    print(file=out)
    table = [("SLOT", "PLUGIN", "DISTRIBUTION")]
    for row in doc["plugins"]:
        if not row["plugins"]:
            table.append((row["slot"], "(none)", ""))
        for i, p in enumerate(row["plugins"]):
            table.append((row["slot"] if i == 0 else "", p["name"], p["installed"]))
    _print_table(table, out)
    return 0 if all_running else 1


def _print_table(rows, out) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print(("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1]).rstrip(),
              file=out)
