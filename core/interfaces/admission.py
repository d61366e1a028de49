"""The admission pipeline interface.

Admission plugins (entry-point group ``pilothouse.admission``) are listed in the config under
``admission.plugins`` in the order they run. For every create, update, delete and connect
request that passed authorization, the API server:

1. calls :meth:`AdmissionPlugin.mutate` of every configured plugin, in configured order; a
   plugin changes ``request.object`` in place and later plugins see the change;
2. defaults and validates the object against its schema;
3. calls :meth:`AdmissionPlugin.validate` of every configured plugin, in configured order;
   validating plugins must not change the object.

The first denial stops the pipeline; nothing is stored and the client receives a ``Status``
(code 403 Forbidden unless the plugin's :class:`Denied` says otherwise, reason and message
from the plugin, field causes if given). A plugin that raises an unexpected exception denies
the request (fail closed) with an Internal error naming the plugin. Dry-run requests
(``request.dry_run``) run the same pipeline; a plugin with side effects must skip them then.

Version history: appeared in 0.1.
"""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["AdmissionPlugin", "AdmissionRequest", "Denied"]


@dataclasses.dataclass(slots=True)
class AdmissionRequest:
    """One request under admission.

    ``operation``: ``"CREATE"``, ``"UPDATE"``, ``"DELETE"`` or ``"CONNECT"``.
    ``group``/``version``/``kind``/``resource``/``subresource``: what is being written
    (``subresource`` is ``""`` for the main resource). ``namespace`` (``""`` for
    cluster-scoped) and ``name``. ``object``: the new object (dict; None for DELETE);
    ``old_object``: the stored object (None for CREATE). ``user``: the
    :class:`~pilothouse.interfaces.auth.UserInfo`. ``dry_run``: nothing will be persisted.
    ``client``: an API client acting as the API server itself, for plugins that must read
    other objects (e.g. quotas); may be None in unit tests.
    """

    operation: str
    group: str
    version: str
    kind: str
    resource: str
    namespace: str
    name: str
    object: dict | None
    old_object: dict | None = None
    subresource: str = ""
    user: Any = None
    dry_run: bool = False
    client: Any = None


@dataclasses.dataclass(frozen=True, slots=True)
class Denied:
    """A denial. ``message`` reaches the user verbatim; ``reason`` is the Status reason
    (``"Forbidden"`` by default, ``"Invalid"`` with code 422 for field errors); ``causes`` are
    ``(field_path, message)`` pairs shown as ``details.causes``."""

    message: str
    reason: str = "Forbidden"
    code: int = 403
    causes: tuple[tuple[str, str], ...] = ()


class AdmissionPlugin:
    """Base class of admission plugins. Override one or both phases.

    Both methods are coroutines run on the API server's event loop and return None to allow
    or a :class:`Denied` to refuse. They must not block; they may await API reads through
    ``request.client``.
    """

    async def mutate(self, request: AdmissionRequest) -> Denied | None:
        """Mutating phase: change ``request.object`` in place (set defaults, inject fields)
        and return None, or return :class:`Denied`. Called in configured order before schema
        validation. The default does nothing."""
        return None

    async def validate(self, request: AdmissionRequest) -> Denied | None:
        """Validating phase: inspect the final ``request.object`` and return None to allow
        or :class:`Denied`. Called in configured order after schema validation; must not
        change the object. The default allows."""
        return None
