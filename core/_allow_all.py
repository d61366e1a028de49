"""The ``always-allow`` authorizer: the built-in default until RBAC is configured.

Registered through the ``pilothouse.authz`` entry-point group like any third-party
authorizer; the core never imports it.
"""

from pilothouse.interfaces.auth import Authorizer, Decision


class AlwaysAllow(Authorizer):
    """Allows every request. Use only on a trusted loopback cluster."""

    async def authorize(self, user, attributes):
        return Decision.ALLOW, "always-allow authorizer"
