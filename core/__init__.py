"""Pilothouse: a Kubernetes-compatible container orchestrator whose every behaviour is a plugin.

The public API of the core is small: :mod:`pilothouse.hooks` (pluggy hook specifications),
:mod:`pilothouse.interfaces` (driver and pipeline interfaces), :mod:`pilothouse.api`
(.proto files and stubs for out-of-process plugins), :mod:`pilothouse.model` (the object
model), :mod:`pilothouse.plugins` (discovery), :mod:`pilothouse.config` and
:mod:`pilothouse.testing` (fixtures and conformance suites). Everything else is private.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
