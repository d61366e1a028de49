"""Reading container logs in the CRI format for ``kubectl logs``.

Each record is ``<RFC 3339 nanosecond timestamp> <stdout|stderr> <P|F> <text>``; ``P``
records are pieces of a longer line that the next records complete. :func:`read_logs`
yields the text as ``kubectl logs`` prints it, with the options of ``PodLogOptions``:
``tail_lines``, ``since`` (seconds since the epoch), ``timestamps``, ``limit_bytes`` and
``follow`` (keep reading until the container has exited and the file is drained).
"""

from __future__ import annotations

import asyncio
import calendar
import os
from collections.abc import AsyncIterator, Awaitable, Callable

__all__ = ["parse_record", "parse_timestamp", "read_logs"]

_CHUNK = 64 * 1024


def parse_timestamp(text: str) -> float:
    """RFC 3339 (nanoseconds, ``Z`` or an offset) → seconds since the epoch."""
    date, _, rest = text.partition("T")
    y, mo, d = (int(x) for x in date.split("-"))
    offset = 0
    for sign in ("Z", "+", "-"):
        idx = rest.rfind(sign)
        if idx > 0:
            zone = rest[idx:]
            rest = rest[:idx]
            if sign != "Z":
                hh, _, mm = zone[1:].partition(":")
                offset = (int(hh) * 3600 + int(mm or 0) * 60) * (1 if sign == "+" else -1)
            break
    clock, _, frac = rest.partition(".")
    h, mi, s = (int(x) for x in clock.split(":"))
    seconds = calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0)) - offset
    return seconds + (float("0." + frac) if frac else 0.0)


def parse_record(line: bytes) -> tuple[bytes, bytes, bool, bytes] | None:
    """``(timestamp, stream, partial, text)`` of one record (without its newline), or None
    for a malformed line."""
    parts = line.split(b" ", 3)
    if len(parts) < 3:
        return None
    ts, stream, tag = parts[0], parts[1], parts[2]
    text = parts[3] if len(parts) == 4 else b""
    if stream not in (b"stdout", b"stderr") or tag not in (b"P", b"F"):
        return None
    return ts, stream, tag == b"P", text


class _Formatter:
    def __init__(self, timestamps: bool, since: float | None, stream: str | None = None):
        self.timestamps, self.since = timestamps, since
        self.stream = stream.encode() if stream else None
        self.at_line_start = True
        self.skipping = False

    def format(self, line: bytes) -> bytes:
        rec = parse_record(line)
        if rec is None:
            return b""
        ts, stream, partial, text = rec
        if self.stream is not None and stream != self.stream:
            return b""
        if self.at_line_start:
            self.skipping = False
            if self.since is not None:
                try:
                    self.skipping = parse_timestamp(ts.decode()) < self.since
                except ValueError:
                    self.skipping = False
        out = b""
        if not self.skipping:
            if self.at_line_start and self.timestamps:
                out += ts + b" "
            out += text + (b"" if partial else b"\n")
        self.at_line_start = not partial
        return out


def _tail_offset(path: str, lines: int) -> int:
    """Byte offset where the last ``lines`` full log lines start."""
    if lines <= 0:
        return os.path.getsize(path)
    with open(path, "rb") as f:
        data = f.read()
    ends = []
    pos = 0
    for raw in data.split(b"\n"):
        start = pos
        pos += len(raw) + 1
        rec = parse_record(raw)
        if rec is not None and not rec[2]:
            ends.append(start)
    # ends[i] is the offset of the F record closing line i; a line starts after the
    # previous line's F record
    if len(ends) <= lines:
        return 0
    cut = ends[-lines - 1]
    nl = data.find(b"\n", cut)
    return nl + 1 if nl >= 0 else len(data)


async def read_logs(path: str, *, follow: bool = False, tail_lines: int | None = None,
                    since: float | None = None, timestamps: bool = False,
                    limit_bytes: int | None = None,
                    running: Callable[[], Awaitable[bool]] | None = None,
                    stream: str | None = None, poll: float = 0.1) -> AsyncIterator[bytes]:
    """Yield the formatted log of one container file (see the module docstring).
    ``running()`` says whether the container may still write (checked when following and
    the file is drained); ``stream`` keeps only ``"stdout"`` or ``"stderr"``."""
    if not os.path.exists(path):
        return
    offset = await asyncio.to_thread(_tail_offset, path, tail_lines) \
        if tail_lines is not None else 0
    fmt = _Formatter(timestamps, since, stream)
    budget = limit_bytes if limit_bytes and limit_bytes > 0 else None
    pending = b""
    with open(path, "rb") as f:
        f.seek(offset)
        idle_checks = 0
        while True:
            chunk = await asyncio.to_thread(f.read, _CHUNK)
            if chunk:
                idle_checks = 0
                pending += chunk
                *lines, pending = pending.split(b"\n")
                out = b"".join(fmt.format(line) for line in lines)
                if out:
                    if budget is not None:
                        out = out[:budget]
                        budget -= len(out)
                    yield out
                    if budget is not None and budget <= 0:
                        return
                continue
            if not follow:
                return
            if running is not None and not await running():
                idle_checks += 1
                if idle_checks > 1:  # drained after the container exited
                    return
            await asyncio.sleep(poll)
