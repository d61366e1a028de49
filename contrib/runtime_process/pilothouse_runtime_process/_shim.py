"""The per-container monitor ("shim") and the exec launcher of the process runtime.

``python -m pilothouse_runtime_process._shim run DIR`` starts the container described by
``DIR/spec.json`` and stays with it, detached from the runtime (its own session, reparented
to init), so containers outlive the node agent as they do under containerd. It:

1. forks so that the runtime's child exits at once and the monitor is nobody's child but
   init's (no zombie for the runtime to reap), and becomes a child subreaper so the
   container's orphaned descendants are re-parented to it;
2. spawns the container process in a new session (its own process group), after
   ``chroot``/``chdir``/``setgroups``/``setgid``/``setuid`` as the spec says;
3. writes ``DIR/started.json`` (pids with their start times, the start time) and tells the
   runtime on its stdout pipe, one JSON line: ``{"ok": true}`` or ``{"error": "..."}``;
4. copies the process's stdout and stderr into the CRI log (``<RFC 3339 nano> <stream>
   <P|F> <text>``, lines over 16 KiB split into partial records, an unterminated last line
   is a partial record); ``SIGHUP`` makes it reopen the log file (rotation);
5. when the process exits: kills what is left of the container (its process group and
   every descendant re-parented to the monitor), drains the pipes, writes
   ``DIR/exit.json`` (exit code, 128+N for signal N; finish time) and exits.

``python -m pilothouse_runtime_process._shim exec DIR STATUS_FD -- CMD...`` enters the same
environment as the container (root, working directory, user, environment) and ``exec``s
``CMD``; if that fails the reason is written to ``STATUS_FD`` (close-on-exec, so nothing is
written on success) and it exits 127.

Standard library only: this module runs as a separate, long-lived process per container.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time

MAX_RECORD = 16 * 1024  # CRI runtimes split longer lines into partial records
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
CLONE_NEWNS = 0x00020000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 0x20, 0x1000, 0x4000, 0x40000


def _libc():
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def write_json_atomic(path: str, doc: dict) -> None:
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(doc, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def proc_start_time(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot, None if it is gone (or a
    zombie): with the pid, it identifies a process across pid reuse."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rfind(b")") + 2:].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])  # field 22 overall: starttime


def rfc3339_nano(ns: int) -> str:
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


# ------------------------------------------------------------------------------------------
# entering the container's environment (used in the child before exec)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(libc, source: str | None, target: str, fstype: str | None, flags: int) -> None:
    enc = (lambda v: None if v is None else v.encode())
    _check(libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), None),
           f"mount {source or fstype} on {target}")


def private_mounts(spec: dict, libc) -> None:
    """In a new mount namespace (so nothing shows on the host and everything vanishes with
    the container's last process): bind-mount the spec's volumes into the root and mount
    /proc. ``spec["mounts"]`` holds host paths and absolute targets already inside root."""
    _check(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _mount(libc, None, "/", None, MS_REC | MS_PRIVATE)
    for m in spec.get("mounts") or ():
        _mount(libc, m["host_path"], m["target"], None, MS_BIND | MS_REC)
        if m.get("readonly"):
            _mount(libc, None, m["target"], None, MS_BIND | MS_REMOUNT | MS_RDONLY)
    proc = os.path.join(spec["root"], "proc")
    _mount(libc, "proc", proc, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)


def join_mounts(pid: int, start: int | None, libc) -> None:
    """Enter the mount namespace of the container process ``pid`` (checked against its
    start time, so a reused pid is never joined)."""
    fd = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if proc_start_time(pid) != start:
            raise OSError(3, "the container's process is gone")
        _check(libc.setns(fd, CLONE_NEWNS), "setns(mount namespace)")
    finally:
        os.close(fd)


def enter(spec: dict, libc, join: tuple[int, int | None] | None = None) -> None:
    """Set up mounts (or join the container's), chroot, chdir, drop to the container's
    user; raise OSError naming the step."""
    if spec.get("mount_namespace") and libc is not None:
        if join is None:
            private_mounts(spec, libc)
        else:
            join_mounts(join[0], join[1], libc)
    adj = spec.get("oom_score_adj")
    if adj:
        try:
            with open("/proc/self/oom_score_adj", "w") as f:
                f.write(str(adj))
        except OSError:
            pass  # lowering it needs CAP_SYS_RESOURCE; the score is advisory
    root = spec.get("root")
    if root:
        os.chroot(root)
    os.chdir(spec.get("workdir") or "/")
    if spec.get("groups") is not None:
        os.setgroups(spec["groups"])
    if spec.get("gid") is not None:
        os.setgid(spec["gid"])
    if spec.get("uid") is not None:
        os.setuid(spec["uid"])
    if spec.get("no_new_privs") and libc is not None:
        libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)


# ------------------------------------------------------------------------------------------
# the log writer


class LogWriter:
    """Writes CRI log records for both streams to one file, reopenable on rotation."""

    def __init__(self, path: str | None):
        self.path = path
        self.lock = threading.Lock()
        self.fd = self._open()

    def _open(self) -> int | None:
        if not self.path:
            return None
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)

    def reopen(self) -> None:
        with self.lock:
            old, self.fd = self.fd, self._open()
            if old is not None:
                os.close(old)

    def record(self, stream: str, tag: str, text: bytes) -> None:
        line = f"{rfc3339_nano(time.time_ns())} {stream} {tag} ".encode() + text + b"\n"
        with self.lock:
            if self.fd is not None:
                os.write(self.fd, line)


def pump(fd: int, stream: str, log: LogWriter, tty: bool = False) -> None:
    """Copy one pipe (or pty) into the log until EOF."""
    buf = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: a pty whose other side is closed
            chunk = b""
        if not chunk:
            break
        buf += chunk
        while True:
            nl = buf.find(b"\n")
            if nl < 0:
                break
            line, buf = buf[:nl], buf[nl + 1:]
            if tty and line.endswith(b"\r"):
                line = line[:-1]
            while len(line) > MAX_RECORD:
                log.record(stream, "P", line[:MAX_RECORD])
                line = line[MAX_RECORD:]
            log.record(stream, "F", line)
        while len(buf) > MAX_RECORD:
            log.record(stream, "P", buf[:MAX_RECORD])
            buf = buf[MAX_RECORD:]
    if buf:
        log.record(stream, "P", buf)
    os.close(fd)


# ------------------------------------------------------------------------------------------
# run: the monitor


def _children_of(pid: int) -> list[int]:
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        fields = data[data.rfind(b")") + 2:].split()
        if int(fields[1]) == pid:
            out.append(int(name))
    return out


def _kill_rest(pgid: int) -> None:
    """SIGKILL the container's process group and every descendant re-parented to us."""
    me = os.getpid()
    for _ in range(50):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except OSError:
            pass
        left = _children_of(me)
        if not left:
            return
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        _reap(block=False)
        time.sleep(0.02)


def _reap(block: bool) -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, 0 if block else os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def run(directory: str) -> int:
    with open(os.path.join(directory, "spec.json")) as f:
        spec = json.load(f)
    report = os.fdopen(os.dup(1), "w")  # the runtime reads one line from our stdout
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 1)
    if os.fork() > 0:  # the runtime reaps this parent at once; the monitor lives on
        os._exit(0)
    libc = _libc()
    if libc is not None:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)

    log = LogWriter(spec.get("log_path"))
    signal.signal(signal.SIGHUP, lambda *_: log.reopen())

    stdin_keep = None
    if spec.get("tty"):
        import pty
        master, slave = pty.openpty()
        stdin, stdout, stderr = slave, slave, slave
        readers = [(master, "stdout")]
    else:
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        if spec.get("stdin"):
            stdin, stdin_keep = os.pipe()  # held open: a read blocks instead of seeing EOF
        else:
            stdin = devnull
        stdout, stderr = out_w, err_w
        readers = [(out_r, "stdout"), (err_r, "stderr")]

    why_r, why_w = os.pipe()  # the child's reason when set-up fails (Popen drops it)

    def child_setup() -> None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # ignoring is inherited
            signal.signal(sig, signal.SIG_DFL)
        try:
            if spec.get("tty"):
                import fcntl
                import termios
                fcntl.ioctl(0, termios.TIOCSCTTY, 0)
            enter(spec, libc)
        except OSError as exc:
            os.write(why_w, str(exc).encode())
            raise

    started_at = time.time()
    try:
        proc = subprocess.Popen(
            spec["argv"], env=spec["env"], stdin=stdin, stdout=stdout, stderr=stderr,
            start_new_session=True, preexec_fn=child_setup, close_fds=True,
            restore_signals=True)
    except (OSError, subprocess.SubprocessError) as exc:
        os.close(why_w)
        why = os.read(why_r, 4096).decode(errors="replace")
        message = _start_error(spec, exc, why)
        write_json_atomic(os.path.join(directory, "exit.json"), {
            "exit_code": 128, "finished_at": time.time(), "reason": "StartError",
            "message": message, "started_at": started_at})
        report.write(json.dumps({"error": message}) + "\n")
        report.close()
        return 1
    os.close(why_w)
    os.close(why_r)
    for fd in {stdin, stdout, stderr} - {devnull}:
        os.close(fd)
    threads = [threading.Thread(target=pump, args=(fd, stream, log, bool(spec.get("tty"))),
                                daemon=True) for fd, stream in readers]
    for t in threads:
        t.start()
    me = os.getpid()
    write_json_atomic(os.path.join(directory, "started.json"), {
        "pid": proc.pid, "pid_start": proc_start_time(proc.pid),
        "shim_pid": me, "shim_start": proc_start_time(me), "started_at": started_at})
    report.write(json.dumps({"ok": True, "pid": proc.pid}) + "\n")
    report.close()

    while True:  # reap orphans re-parented to us until the container's process exits
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            status = 0
            break
        if pid == proc.pid:
            break
    finished_at = time.time()
    proc.returncode = 0  # reaped by hand above; keep Popen from waiting again
    code = os.waitstatus_to_exitcode(status)
    exit_code = 128 - code if code < 0 else code
    _kill_rest(proc.pid)
    if stdin_keep is not None:
        os.close(stdin_keep)
    for t in threads:
        t.join(timeout=5)
    _reap(block=False)
    write_json_atomic(os.path.join(directory, "exit.json"), {
        "exit_code": exit_code, "finished_at": finished_at,
        "reason": "Completed" if exit_code == 0 else "Error",
        "message": f"killed by signal {-code}" if code < 0 else ""})
    return 0


def _start_error(spec: dict, exc: BaseException, why: str = "") -> str:
    exe = spec["argv"][0] if spec.get("argv") else "?"
    if why:
        return f"cannot set up the process of {exe!r}: {why}"
    where = f" in {spec['root']}" if spec.get("root") else ""
    if isinstance(exc, FileNotFoundError):
        if "/" in exe:
            return f"exec {exe!r}: no such file or directory{where}"
        return f"exec {exe!r}: executable file not found in $PATH{where}"
    if isinstance(exc, PermissionError):
        return f"exec {exe!r}: permission denied{where}"
    if isinstance(exc, subprocess.SubprocessError):
        return (f"cannot set up the process of {exe!r} (chroot to {spec.get('root')!r}, "
                f"chdir to {spec.get('workdir')!r}, or switching to uid {spec.get('uid')}): "
                f"{exc}")
    return f"exec {exe!r}: {exc}"


# ------------------------------------------------------------------------------------------
# exec: a one-shot launcher


def exec_in(directory: str, status_fd: int, argv: list[str]) -> int:
    with open(os.path.join(directory, "spec.json")) as f:
        spec = json.load(f)
    env = dict(spec["env"])
    os.set_inheritable(status_fd, False)
    join = None
    if spec.get("mount_namespace"):
        started = json.load(open(os.path.join(directory, "started.json")))
        join = (started["pid"], started["pid_start"])
    try:
        enter(spec, _libc(), join)
        os.execvpe(argv[0], argv, env)
    except OSError as exc:
        message = _start_error({**spec, "argv": argv}, exc)
        try:
            os.write(status_fd, message.encode())
        except OSError:
            pass
        return 127


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "run":
        return run(argv[1])
    if len(argv) >= 4 and argv[0] == "exec" and argv[3] == "--":
        return exec_in(argv[1], int(argv[2]), argv[4:])
    print("usage: _shim run DIR | _shim exec DIR STATUS_FD -- CMD...", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
