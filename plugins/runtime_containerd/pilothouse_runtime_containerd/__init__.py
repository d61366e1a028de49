"""Pilothouse runtime plugin ``containerd``: pods under containerd through CRI v1.

Entry point ``containerd`` in group ``pilothouse.runtime``. See README.md.
"""

from pilothouse_runtime_containerd.runtime import ContainerdRuntime, Options

__all__ = ["ContainerdRuntime", "Options"]
