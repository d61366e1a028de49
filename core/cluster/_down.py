"""``pilothouse down``: stop a cluster's components by PID, then its pods; keep its data
unless ``--purge``."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import pathlib
import shutil
import sys
import time

from pilothouse.cluster._components import COMPONENTS
from pilothouse.cluster._state import StateDir, default_state_dir, stop_process
from pilothouse.config import ConfigError, load_config, parse_config

__all__ = ["down"]


async def _maybe_await(value):
    return await value if inspect.isawaitable(value) else value


async def _teardown_runtime(runtime, purge: bool) -> str:
    """Stop and remove every pod sandbox of the cluster's runtime and stop the runtime.
    A driver with ``destroy()`` (runtime_containerd) also unmounts what is left, deletes its
    bridge and, on purge, its data; otherwise the interface's calls are used."""
    await _maybe_await(runtime.open())
    destroy = getattr(runtime, "destroy", None)
    if destroy is not None:
        await destroy(remove_data=purge)
        return "pods removed, runtime stopped" + (" and purged" if purge else "")
    try:
        sandboxes = await runtime.list_pod_sandboxes()
        for sandbox in sandboxes:
            with contextlib.suppress(Exception):
                await runtime.stop_pod_sandbox(sandbox.id)
            with contextlib.suppress(Exception):
                await runtime.remove_pod_sandbox(sandbox.id)
    finally:
        await _maybe_await(runtime.close())
    return f"{len(sandboxes)} pod(s) removed, runtime stopped"


def _runtime_driver(config_path: pathlib.Path):
    """The cluster's runtime driver (constructed, not opened), or None when it has none or
    it does not belong to the cluster (``endpoint`` of a shared containerd)."""
    from pilothouse.plugins import load_plugins
    config = load_config(config_path)
    ref = config.driver("runtime")
    if ref is None or (ref.name == "containerd" and not ref.options.get("manage")):
        return None
    doc = {"base": "none", "runtime": {"plugin": ref.name, "options": dict(ref.options)}}
    return load_plugins(parse_config(doc, config.source)).driver("runtime")


def down(state_dir: str | os.PathLike | None = None, *, purge: bool = False,
         keep_pods: bool = False, timeout: float = 15.0, err=None) -> int:
    """Stop the cluster in ``state_dir``; exit code (0: nothing of it runs any more)."""
    err = err or sys.stderr
    state = StateDir(state_dir or default_state_dir())
    if not state.exists():
        print(f"no cluster in {state.root} (nothing to stop)", file=err)
        return 0
    failed = False
    for comp in reversed(COMPONENTS):
        rec = state.record(comp.name)
        if rec is None:
            if state.clean_stale(comp.name):
                print(f"{comp.title}: removed an unreadable pid file", file=err)
            continue
        if not rec.alive():
            state.forget(comp.name)
            print(f"{comp.title}: not running (removed its stale pid file)", file=err)
            continue
        t0 = time.monotonic()
        print(f"stopping {comp.title} (pid {rec.pid}) ...", end="", file=err, flush=True)
        result = stop_process(rec.pid, rec.start_time, timeout)
        print(f" {result} ({time.monotonic() - t0:.1f} s)", file=err, flush=True)
        if rec.alive():
            failed = True
            print(f"  {comp.title} (pid {rec.pid}) is still running", file=err)
        else:
            state.forget(comp.name)
    if state.config.exists() and not keep_pods and not failed:
        t0 = time.monotonic()
        print("stopping the pods and the runtime ...", end="", file=err, flush=True)
        try:
            runtime = _runtime_driver(state.config)
            if runtime is None:
                print(" skipped (the runtime is not the cluster's own; its pods keep "
                      "running)", file=err)
            else:
                result = asyncio.run(_teardown_runtime(runtime, purge))
                print(f" {result} ({time.monotonic() - t0:.1f} s)", file=err)
        except (ConfigError, Exception) as exc:  # report, never leave `down` half-done
            failed = True
            print(f" failed: {type(exc).__name__}: {exc}", file=err)
    if purge and not failed:
        _purge(state, err)
    elif not purge:
        print(f"data kept in {state.root} (`pilothouse down --purge` removes it)", file=err)
    return 1 if failed else 0


def _purge(state: StateDir, err) -> None:
    root = state.root
    if root in (pathlib.Path("/"), pathlib.Path.home()) or not (
            state.config.exists() or state.settings_file.exists()):
        print(f"not removing {root}: it does not look like a pilothouse state directory",
              file=err)
        return
    shutil.rmtree(root, ignore_errors=True)
    print(f"removed {root}", file=err)
