"""Throwaway etcd servers and clusters on loopback, for tests and benchmarks.

:class:`EtcdCluster` starts ``size`` real ``etcd`` processes (the binary on ``PATH``, or
``$ETCD``) on free loopback ports with their data under one temporary directory. Durability
is etcd's normal one (``--unsafe-no-fsync`` is never passed). Every process is stopped by its
PID on :meth:`EtcdCluster.stop`, at interpreter exit, or when the ``with`` block ends, and the
temporary directory is removed::

    with EtcdCluster(size=3) as cluster:
        options = {"endpoints": cluster.endpoints, "prefix": "/test"}
        leader = cluster.leader()
        cluster.kill(leader)            # SIGKILL
        cluster.start_member(leader)    # same ports, same data directory

Members serve watch progress notifications every ``progress_notify_interval`` (etcd's own
default is 10 minutes) and accept requests up to ``max_request_bytes`` (etcd's default,
1.5 MiB, is too small for a 1.5 MiB value plus its key). ``preexec_fn`` is passed to
:class:`subprocess.Popen` (e.g. to have members killed when the parent dies). With
``tls=(ca, cert, key)`` the client URLs are https, serve ``cert`` and require client
certificates signed by ``ca`` (the same certificate serves as the client's in tests).
"""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
import weakref

import grpc

from pilothouse_store_etcd import etcd_rpc_pb2 as pb

__all__ = ["EtcdCluster", "EtcdNotFound", "etcd_binary", "prefix_for", "status"]

_LIVE: "weakref.WeakSet[EtcdCluster]" = weakref.WeakSet()


class EtcdNotFound(RuntimeError):
    """No etcd binary: install Debian's ``etcd-server`` or set ``$ETCD``."""


def etcd_binary() -> str:
    """Path of the etcd server binary; raises :class:`EtcdNotFound`."""
    path = os.environ.get("ETCD") or shutil.which("etcd") or "/usr/bin/etcd"
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise EtcdNotFound(f"no etcd binary at {path!r}: install the 'etcd-server' package "
                           f"or set $ETCD to the etcd server binary")
    return path


def prefix_for(path) -> str:
    """A store ``prefix`` option unique to ``path`` (e.g. a test's ``tmp_path``) and stable
    for it, so a store reopened on the same path finds its data again."""
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:12]
    name = "".join(c if c.isalnum() or c in "-_." else "-" for c in os.path.basename(str(path)))
    return f"/pilothouse-test/{name[:40]}-{digest}"


def _free_ports(n: int) -> list[int]:
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def status(endpoint: str, timeout: float = 1.0,
           tls: tuple[str, str, str] | None = None) -> pb.StatusResponse:
    """etcd's Maintenance.Status of one member (raises grpc.RpcError when it is down).
    ``tls`` is (CA, client certificate, client key) PEM paths for a TLS endpoint."""
    if tls:
        ca, cert, key = (open(p, "rb").read() for p in tls)
        channel = grpc.secure_channel(endpoint, grpc.ssl_channel_credentials(ca, key, cert))
    else:
        channel = grpc.insecure_channel(endpoint)
    with channel:
        call = channel.unary_unary("/etcdserverpb.Maintenance/Status",
                                   pb.StatusRequest.SerializeToString,
                                   pb.StatusResponse.FromString)
        return call(pb.StatusRequest(), timeout=timeout)


class EtcdCluster:
    """``size`` etcd members on loopback. See the module docstring."""

    def __init__(self, size: int = 1, *, data_dir: str | None = None,
                 progress_notify_interval: str = "200ms",
                 max_request_bytes: int = 4 * 1024 * 1024,
                 extra_args: tuple[str, ...] = (), preexec_fn=None,
                 tls: tuple[str, str, str] | None = None) -> None:
        self.size = size
        self.tls = tls
        self._preexec_fn = preexec_fn
        self._own_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="pilothouse-etcd-")
        os.makedirs(self.data_dir, exist_ok=True)
        ports = _free_ports(2 * size)
        self.client_ports, self.peer_ports = ports[:size], ports[size:]
        self.names = [f"m{i}" for i in range(size)]
        self._token = f"pilothouse-{uuid.uuid4().hex[:12]}"
        self._args = (f"--experimental-watch-progress-notify-interval="
                      f"{progress_notify_interval}",
                      f"--max-request-bytes={max_request_bytes}", *extra_args)
        self.procs: list[subprocess.Popen | None] = [None] * size
        self._logs: list = [None] * size
        _LIVE.add(self)

    @property
    def endpoints(self) -> list[str]:
        """Client endpoints, ``127.0.0.1:port``, in member order."""
        return [f"127.0.0.1:{p}" for p in self.client_ports]

    def _command(self, i: int) -> list[str]:
        peers = ",".join(f"{n}=http://127.0.0.1:{p}"
                         for n, p in zip(self.names, self.peer_ports))
        scheme = "https" if self.tls else "http"
        client = f"{scheme}://127.0.0.1:{self.client_ports[i]}"
        peer = f"http://127.0.0.1:{self.peer_ports[i]}"
        return [etcd_binary(), f"--name={self.names[i]}",
                f"--data-dir={os.path.join(self.data_dir, self.names[i])}",
                f"--listen-client-urls={client}", f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster={peers}", "--initial-cluster-state=new",
                f"--initial-cluster-token={self._token}", "--logger=zap",
                "--log-outputs=stderr", "--log-level=warn", *self._tls_args(), *self._args]

    def _tls_args(self) -> list[str]:
        if not self.tls:
            return []
        ca, cert, key = self.tls
        return [f"--trusted-ca-file={ca}", f"--cert-file={cert}", f"--key-file={key}",
                "--client-cert-auth"]

    def start(self, timeout: float = 30.0) -> "EtcdCluster":
        """Start every member and wait until the cluster has a leader."""
        for i in range(self.size):
            self.start_member(i, wait=False)
        self.wait_ready(timeout)
        return self

    def start_member(self, i: int, wait: bool = True, timeout: float = 30.0) -> None:
        """(Re)start member ``i`` on its ports and data directory."""
        if self.procs[i] is not None and self.procs[i].poll() is None:
            return
        if self._logs[i] is None:
            self._logs[i] = open(os.path.join(self.data_dir, f"{self.names[i]}.log"), "ab")
        self.procs[i] = subprocess.Popen(self._command(i), stdout=self._logs[i],
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True,
                                         preexec_fn=self._preexec_fn)
        if wait:
            self.wait_ready(timeout, members=[i])

    def alive(self) -> list[int]:
        """Indexes of members whose process is running."""
        return [i for i, p in enumerate(self.procs) if p is not None and p.poll() is None]

    def wait_ready(self, timeout: float = 30.0, members: list[int] | None = None) -> None:
        """Wait until the given members (default: all running ones) answer Status and see
        a leader; raise RuntimeError with the end of their logs otherwise."""
        deadline = time.monotonic() + timeout
        pending = set(self.alive() if members is None else members)
        while pending:
            for i in sorted(pending):
                if self.procs[i] is None or self.procs[i].poll() is not None:
                    raise RuntimeError(f"etcd member {self.names[i]} exited with "
                                       f"{self.procs[i] and self.procs[i].returncode}:\n"
                                       f"{self.log_tail(i)}")
                try:
                    if status(self.endpoints[i], 0.5, self.tls).leader:
                        pending.discard(i)
                except grpc.RpcError:
                    pass
            if pending and time.monotonic() > deadline:
                raise RuntimeError(f"etcd members {sorted(pending)} not ready after "
                                   f"{timeout}s:\n" + "\n".join(
                                       self.log_tail(i) for i in sorted(pending)))
            if pending:
                time.sleep(0.05)

    def leader(self, timeout: float = 10.0) -> int:
        """Index of the current leader, as the running members report it."""
        deadline = time.monotonic() + timeout
        while True:
            for i in self.alive():
                try:
                    st = status(self.endpoints[i], 0.5, self.tls)
                except grpc.RpcError:
                    continue
                if st.leader and st.leader == st.header.member_id:
                    return i
            if time.monotonic() > deadline:
                raise RuntimeError("no etcd leader")
            time.sleep(0.02)

    def kill(self, i: int, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to member ``i`` (by PID) and reap it."""
        proc = self.procs[i]
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def stop(self) -> None:
        """Stop every member (SIGTERM, then SIGKILL after 5 s), close logs, and remove the
        data directory if this object created it. Idempotent."""
        for proc in self.procs:
            if proc is not None and proc.poll() is None:
                proc.terminate()
        for i, proc in enumerate(self.procs):
            if proc is not None:
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        for f in self._logs:
            if f is not None:
                f.close()
        self._logs = [None] * self.size
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        _LIVE.discard(self)

    def log_tail(self, i: int, lines: int = 20) -> str:
        try:
            with open(os.path.join(self.data_dir, f"{self.names[i]}.log"), "rb") as f:
                return b"".join(f.readlines()[-lines:]).decode(errors="replace")
        except OSError:
            return ""

    def __enter__(self) -> "EtcdCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@atexit.register
def _stop_all() -> None:
    for cluster in list(_LIVE):
        cluster.stop()
