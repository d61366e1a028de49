"""A Pilothouse runtime driver for machines without containerd: every container is a plain
host process (like Nomad's ``raw_exec``), chrooted into its own copy of the image when the
runtime runs as root. Entry point ``process`` in group ``pilothouse.runtime``; see README.md
for what it does and does not isolate."""

from pilothouse_runtime_process._runtime import ProcessRuntime

__all__ = ["ProcessRuntime"]
