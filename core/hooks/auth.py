"""Authentication and authorization observation hooks. Called by the API server.

Authenticators and authorizers themselves are ordered pipelines chosen in the config
(``authentication.plugins``, ``authorization.plugins``; interfaces in
:mod:`pilothouse.interfaces.auth`). These hooks observe their outcome, for audit logs.
"""

from pilothouse.hooks._markers import hookspec


@hookspec
def pilothouse_request_authenticated(user, method, path):
    """A request was authenticated.

    :param user: the :class:`pilothouse.interfaces.auth.UserInfo` the pipeline produced
        (``system:anonymous`` when no authenticator recognised the request).
    :param method: HTTP method. :param path: request path without the query.

    Broadcast, once per request before authorization, on the API server's event loop; must
    not block. Exceptions are logged and ignored.

    Since 0.1.
    """


@hookspec
def pilothouse_authorization_decided(user, attributes, allowed, reason):
    """An authorization decision was made.

    :param user: the request's :class:`~pilothouse.interfaces.auth.UserInfo`.
    :param attributes: the :class:`~pilothouse.interfaces.auth.RequestAttributes` checked.
    :param allowed: the final decision. :param reason: the deciding plugin's reason.

    Broadcast, once per request; must not block. Exceptions are logged and ignored.

    Since 0.1.
    """
