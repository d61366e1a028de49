"""Run raft store members as separate OS processes (member_runner.py), each serving its
store over gRPC. Used by the fault test and bench/bench_raft.py. Every process it starts is
tracked by its Popen object and ended by PID; nothing else is ever signalled."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time

from raft_testing import free_ports

RUNNER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "member_runner.py")


class ProcessCluster:
    def __init__(self, base_dir, n: int = 3, **options):
        self.base_dir = str(base_dir)
        ports = free_ports(2 * n)
        members = [f"127.0.0.1:{p}" for p in ports[:n]]
        self.grpc = [f"127.0.0.1:{p}" for p in ports[n:]]
        self.options = [{"data_dir": os.path.join(self.base_dir, f"m{i}"),
                         "members": members, "self_address": members[i], **options}
                        for i in range(n)]
        self.procs: dict[int, subprocess.Popen] = {}
        self.n = n

    def status_path(self, i: int) -> str:
        return os.path.join(self.base_dir, f"status{i}.json")

    def start(self, i: int, timeout: float = 30.0) -> None:
        assert i not in self.procs or self.procs[i].poll() is not None
        log = open(os.path.join(self.base_dir, f"member{i}.log"), "ab")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        proc = subprocess.Popen(
            [sys.executable, RUNNER, "--options", json.dumps(self.options[i]),
             "--listen", self.grpc[i], "--status", self.status_path(i)],
            stdout=subprocess.PIPE, stderr=log, env=env)
        log.close()
        self.procs[i] = proc
        deadline = time.monotonic() + timeout
        line = b""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 0.1)
            if ready:
                line = proc.stdout.readline()
                if line.startswith(b"READY") or not line:
                    break
            if proc.poll() is not None:
                break
        if not line.startswith(b"READY"):
            self.kill(i)
            raise RuntimeError(f"member {i} did not start; see {self.base_dir}/member{i}.log")

    def start_all(self) -> None:
        for i in range(self.n):
            self.start(i)

    def alive(self, i: int) -> bool:
        p = self.procs.get(i)
        return p is not None and p.poll() is None

    def kill(self, i: int, sig: int = signal.SIGKILL) -> None:
        p = self.procs.get(i)
        if p is not None and p.poll() is None:
            os.kill(p.pid, sig)
            p.wait()
        if p is not None and p.stdout is not None:
            p.stdout.close()

    def stop_all(self) -> None:
        for i, p in list(self.procs.items()):
            if p.poll() is None:
                os.kill(p.pid, signal.SIGTERM)
        for i, p in list(self.procs.items()):
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait()
            if p.stdout is not None:
                p.stdout.close()

    def status(self, i: int) -> dict | None:
        if not self.alive(i):
            return None
        try:
            with open(self.status_path(i)) as f:
                st = json.load(f)
        except (OSError, ValueError):
            return None
        return st if st.get("pid") == self.procs[i].pid else None

    def leader(self) -> int | None:
        """The live member that says it leads, with the highest term."""
        best = None
        for i in range(self.n):
            st = self.status(i)
            if st and st.get("is_leader") and (best is None or st["term"] > best[1]):
                best = (i, st["term"])
        return best[0] if best else None

    def wait_leader(self, timeout: float = 15.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leader = self.leader()
            if leader is not None:
                return leader
            time.sleep(0.02)
        raise AssertionError("no leader elected")
