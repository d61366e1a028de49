"""Progress lines on stderr: ``[2/7] starting the API server ... ok (0.8 s)``."""

from __future__ import annotations

import contextlib
import sys
import time

__all__ = ["Progress", "StepFailed"]


class StepFailed(Exception):
    """A step could not finish; ``details`` are printed under the step's line."""

    def __init__(self, message: str, details: str = ""):
        super().__init__(message)
        self.details = details


class _Step:
    def __init__(self, progress: "Progress", number: int, title: str):
        self.progress, self.number, self.title = progress, number, title
        self.result = "ok"
        self.start = time.monotonic()
        self.open = False  # the header is on screen without its newline

    @property
    def header(self) -> str:
        return f"[{self.number}/{self.progress.total}] {self.title} ..."

    def info(self, message: str) -> None:
        """A detail line under the step, printed now (long steps say what they do)."""
        out = self.progress.stream
        if self.open:
            out.write("\n")
            self.open = False
        for line in message.splitlines():
            out.write(f"      {line}\n")
        out.flush()
        self.progress.broken = True

    def done(self, result: str) -> None:
        """Set the word printed after the dots (default ``ok``)."""
        self.result = result


class Progress:
    """Numbered steps. ``with progress.step("starting X") as s: ...; s.done("reused")``."""

    def __init__(self, total: int, stream=None):
        self.total = total
        self.stream = stream or sys.stderr
        self.number = 0
        self.broken = False

    @contextlib.contextmanager
    def step(self, title: str):
        self.number += 1
        step = _Step(self, self.number, title)
        self.broken = False
        self.stream.write(step.header)
        self.stream.flush()
        step.open = True
        try:
            yield step
        except StepFailed as exc:
            self._finish(step, "failed")
            self.stream.write(f"      {exc}\n")
            for line in exc.details.splitlines():
                self.stream.write(f"      | {line}\n")
            self.stream.flush()
            raise
        except BaseException:
            self._finish(step, "failed")
            raise
        self._finish(step, step.result)

    def _finish(self, step: _Step, result: str) -> None:
        took = time.monotonic() - step.start
        prefix = " " if step.open else step.header + " "
        self.stream.write(f"{prefix}{result} ({took:.1f} s)\n")
        self.stream.flush()
        step.open = False
