"""Authentication and authorization pipeline interfaces.

Authenticators (group ``pilothouse.authn``) run in configured order
(``authentication.plugins``): the first to return a :class:`UserInfo` decides; if all return
None the request is anonymous (``system:anonymous``, group ``system:unauthenticated``); an
authenticator that raises :class:`AuthenticationFailed` ends the request with 401.

Authorizers (group ``pilothouse.authz``) run in configured order
(``authorization.plugins``): the first to return ``ALLOW`` or ``DENY`` decides; ``NO_OPINION``
passes to the next; if all have no opinion the request is denied (403). The built-in default
configuration uses the ``always-allow`` authorizer until RBAC is configured.

Version history: appeared in 0.1.
"""

from __future__ import annotations

import abc
import dataclasses
import enum
from collections.abc import Mapping

__all__ = ["AuthenticationFailed", "Authenticator", "Authorizer", "Decision",
           "RequestAttributes", "UserInfo"]


@dataclasses.dataclass(frozen=True, slots=True)
class UserInfo:
    """Who made a request: ``username``, ``uid``, ``groups`` and free-form ``extra``."""

    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)


ANONYMOUS = UserInfo("system:anonymous", groups=("system:unauthenticated",))


class AuthenticationFailed(Exception):
    """Credentials were presented but are invalid (401 with this message)."""


@dataclasses.dataclass(frozen=True, slots=True)
class RequestAttributes:
    """What a request wants to do, as Kubernetes' authorizers see it.

    Resource requests: ``verb`` (get, list, watch, create, update, patch, delete,
    deletecollection), ``api_group``, ``api_version``, ``resource``, ``subresource``,
    ``namespace``, ``name``. Non-resource requests (``/version``, ``/healthz``):
    ``resource_request=False`` and ``path``; ``verb`` is the lowercase HTTP method.
    """

    verb: str
    resource_request: bool = True
    api_group: str = ""
    api_version: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""


class Decision(enum.Enum):
    """An authorizer's answer."""

    ALLOW = "allow"
    DENY = "deny"
    NO_OPINION = "no-opinion"


class Authenticator(abc.ABC):
    """Turns a request's credentials into a user."""

    @abc.abstractmethod
    async def authenticate(self, headers: Mapping[str, str],
                           peer_certificate: dict | None) -> UserInfo | None:
        """Return the user the request's credentials name, None if this authenticator does
        not recognise them (the next one is asked), or raise :class:`AuthenticationFailed`
        for credentials it recognises as invalid. ``headers`` is case-insensitive;
        ``peer_certificate`` is the verified TLS client certificate as returned by
        :meth:`ssl.SSLSocket.getpeercert`, or None. Called by the API server for every
        request, in configured order; must not block."""


class Authorizer(abc.ABC):
    """Decides whether a user may do what a request asks."""

    @abc.abstractmethod
    async def authorize(self, user: UserInfo,
                        attributes: RequestAttributes) -> tuple[Decision, str]:
        """Return ``(decision, reason)``. Called by the API server for every request after
        authentication, in configured order, until one returns ALLOW or DENY. ``reason`` is
        shown to the user on denial. Must not block; an exception denies the request."""
