"""The state directory of a cluster started by ``pilothouse up``, and the processes it
records.

Layout (everything a cluster owns lives under one directory)::

    STATE/config.yaml        the generated config every component reads (self-contained)
    STATE/cluster.json       the settings ``up`` was given (ports, node name, ...), reused
                             by the next ``up``, ``down`` and ``status``
    STATE/kubeconfig         written by the API server at start-up
    STATE/run/NAME.pid       one per component: JSON {pid, start_time, argv, started}
    STATE/logs/NAME.log      one per component: its stdout and stderr, appended
    STATE/store/             the store's data (store_raft)
    STATE/containerd/        the private containerd (runtime_containerd, manage: true)
    STATE/node/              the node agent's data
    STATE/images/            image tars built by ``up``

A pid file is trusted only when the process it names still runs *and* started at the
recorded time (``/proc/PID/stat`` field 22), so a recycled PID is never mistaken for a
component, and a stale file is removed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import signal
import subprocess
import time

__all__ = ["ProcessRecord", "StateDir", "default_state_dir", "process_alive",
           "process_start_time", "stop_process"]

#: Where ``pilothouse up`` keeps a cluster when ``--state-dir`` is not given.
ROOT_STATE_DIR = "/var/lib/pilothouse"


def default_state_dir() -> pathlib.Path:
    """``$PILOTHOUSE_STATE_DIR``, else /var/lib/pilothouse for root, else
    ``$XDG_DATA_HOME/pilothouse`` (``~/.local/share/pilothouse``)."""
    if os.environ.get("PILOTHOUSE_STATE_DIR"):
        return pathlib.Path(os.environ["PILOTHOUSE_STATE_DIR"]).expanduser()
    if os.geteuid() == 0:
        return pathlib.Path(ROOT_STATE_DIR)
    data = os.environ.get("XDG_DATA_HOME") or pathlib.Path.home() / ".local" / "share"
    return pathlib.Path(data) / "pilothouse"


def process_start_time(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot, or None when no such process
    runs (a zombie counts as gone)."""
    try:
        text = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may itself contain spaces or ')'
    fields = text[text.rfind(")") + 2:].split()
    if not fields or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


@dataclasses.dataclass
class ProcessRecord:
    """What a pid file says about one component process."""

    pid: int
    start_time: int | None
    argv: list[str]
    started: float = 0.0

    def alive(self) -> bool:
        return process_alive(self.pid, self.start_time)


def process_alive(pid: int, start_time: int | None = None) -> bool:
    """True when ``pid`` runs and (if given) started at ``start_time``."""
    now = process_start_time(pid)
    return now is not None and (start_time is None or now == start_time)


def stop_process(pid: int, start_time: int | None, timeout: float = 15.0) -> str:
    """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL. Returns ``"stopped"``,
    ``"killed"`` or ``"not running"``. Works for processes that are not our children (it
    polls ``/proc`` instead of waiting)."""
    if not process_alive(pid, start_time):
        return "not running"
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return "not running"
    if _wait_gone(pid, start_time, timeout):
        return "stopped"
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return "stopped"
    _wait_gone(pid, start_time, 10.0)
    return "killed"


def _wait_gone(pid: int, start_time: int | None, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while process_alive(pid, start_time):
        _reap(pid)
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    _reap(pid)
    return True


def _reap(pid: int) -> None:
    """Collect ``pid`` if it is our child (only when ``up`` and ``down`` share a process,
    as in tests); otherwise init does."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


_children: list[subprocess.Popen] = []  # kept so that subprocess reaps them


class StateDir:
    """Paths and records under one cluster's state directory."""

    def __init__(self, root: str | os.PathLike):
        self.root = pathlib.Path(root).expanduser().absolute()

    config = property(lambda self: self.root / "config.yaml")
    settings_file = property(lambda self: self.root / "cluster.json")
    kubeconfig = property(lambda self: self.root / "kubeconfig")
    run_dir = property(lambda self: self.root / "run")
    log_dir = property(lambda self: self.root / "logs")
    image_dir = property(lambda self: self.root / "images")

    def exists(self) -> bool:
        return self.config.exists() or self.settings_file.exists()

    def create(self) -> None:
        for d in (self.root, self.run_dir, self.log_dir, self.image_dir):
            d.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)  # holds the store's data and the kubeconfig

    def pid_file(self, name: str) -> pathlib.Path:
        return self.run_dir / f"{name}.pid"

    def log_file(self, name: str) -> pathlib.Path:
        return self.log_dir / f"{name}.log"

    # -- settings ---------------------------------------------------------------------------

    def read_settings(self) -> dict:
        try:
            return json.loads(self.settings_file.read_text())
        except (OSError, ValueError):
            return {}

    def write_settings(self, settings: dict) -> None:
        _atomic_write(self.settings_file, json.dumps(settings, indent=2, sort_keys=True) + "\n")

    # -- processes --------------------------------------------------------------------------

    def record(self, name: str) -> ProcessRecord | None:
        """The pid file of ``name``, or None when there is none or it is unreadable."""
        try:
            doc = json.loads(self.pid_file(name).read_text())
            return ProcessRecord(int(doc["pid"]), doc.get("start_time"),
                                 list(doc.get("argv") or []), float(doc.get("started") or 0))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def running(self, name: str) -> ProcessRecord | None:
        """The record of ``name`` when its process runs; None otherwise."""
        rec = self.record(name)
        return rec if rec is not None and rec.alive() else None

    def stale(self, name: str) -> ProcessRecord | None:
        """A pid file whose process is gone (removed by :meth:`clean_stale`)."""
        rec = self.record(name)
        if rec is not None and not rec.alive():
            return rec
        if rec is None and self.pid_file(name).exists():
            return ProcessRecord(0, None, [])
        return None

    def clean_stale(self, name: str) -> bool:
        if self.stale(name) is not None:
            self.pid_file(name).unlink(missing_ok=True)
            return True
        return False

    def launch(self, name: str, argv: list[str], env: dict | None = None) -> ProcessRecord:
        """Start ``argv`` detached (own session, stdin from /dev/null, output appended to
        the component's log) and write its pid file."""
        self.create()
        log = open(self.log_file(name), "ab")
        try:
            log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} pilothouse up started: "
                      f"{' '.join(argv)}\n".encode())
            log.flush()
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    cwd=self.root, env=env, close_fds=True)
        finally:
            log.close()
        _children.append(proc)
        start_time = None
        for _ in range(50):  # /proc/PID/stat appears with the fork; retry briefly
            start_time = process_start_time(proc.pid)
            if start_time is not None or proc.poll() is not None:
                break
            time.sleep(0.01)
        rec = ProcessRecord(proc.pid, start_time, argv, time.time())
        _atomic_write(self.pid_file(name), json.dumps(dataclasses.asdict(rec)) + "\n")
        return rec

    def forget(self, name: str) -> None:
        self.pid_file(name).unlink(missing_ok=True)

    def log_tail(self, name: str, lines: int = 20) -> str:
        try:
            with open(self.log_file(name), "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 16384))
                text = f.read().decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def _atomic_write(path: pathlib.Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
