"""Lifecycle, CLI, type and metrics hooks: called by every component host and by the CLI.

Call order in a process: ``pilothouse_configure`` once after the config is loaded and every
plugin registered; ``pilothouse_add_commands`` when the CLI builds its parser;
``pilothouse_register_kinds`` when the API server (or a client) builds its kind registry;
``pilothouse_component_started`` / ``pilothouse_component_stopping`` around each component's
run; ``pilothouse_metrics`` whenever metrics are scraped.
"""

from pilothouse.hooks._markers import hookspec


@hookspec
def pilothouse_configure(config):
    """Called once per process after the config file has been loaded and validated and every
    active plugin registered, before any component starts.

    :param config: the loaded :class:`pilothouse.config.Config` (read-only by convention).

    Broadcast; return values are ignored. An exception aborts start-up with the plugin's
    name and the error (fail closed). Must not block on the network.

    Since 0.1.
    """


@hookspec
def pilothouse_add_commands(subparsers):
    """Contribute sub-commands to the ``pilothouse`` CLI.

    :param subparsers: the :mod:`argparse` sub-parsers action of the top-level parser. Add a
        parser with ``subparsers.add_parser("name", help=...)`` and set its handler with
        ``parser.set_defaults(handler=callable)``; the handler is called with the parsed
        ``argparse.Namespace`` and returns the exit code (``None`` means 0).

    Called by the CLI when it builds its parser, after plugins are discovered. Broadcast;
    every installed plugin of the ``pilothouse.plugins`` group contributes. A name clash with
    a built-in command is an error naming both. Must not do I/O.

    Since 0.1.
    """


@hookspec
def pilothouse_register_kinds(registry):
    """Contribute API kinds (group, version, kind, resource, scope, short names) to the kind
    registry.

    :param registry: the :class:`pilothouse.model.kinds.KindRegistry` being built; call its
        ``register(...)`` method.

    Called by the API server when it builds its registry at start-up, after the built-in
    kinds are registered. Broadcast; registering a resource that already exists raises
    ``ValueError`` and aborts start-up with the plugin's name.

    Since 0.1.
    """


@hookspec
def pilothouse_component_started(component, config):
    """A component host has started and is about to serve.

    :param component: the component's name: ``"apiserver"``, ``"scheduler"``,
        ``"controller-manager"``, ``"node"``, ``"proxy"``.
    :param config: the loaded :class:`pilothouse.config.Config`.

    Broadcast, on the component's event loop; must not block. Exceptions are logged with the
    plugin's name and ignored (observation hook).

    Since 0.1.
    """


@hookspec
def pilothouse_component_stopping(component):
    """A component host is shutting down (signal or ``pilothouse down``).

    :param component: as in :func:`pilothouse_component_started`.

    Broadcast, on the component's event loop, before the component's drivers are closed.
    Exceptions are logged and ignored. Should return within a second.

    Since 0.1.
    """


@hookspec
def pilothouse_metrics(component):
    """Contribute metric samples for ``component``'s ``/metrics`` endpoint.

    :param component: the component being scraped (see :func:`pilothouse_component_started`).
    :returns: an iterable of ``(name, labels_dict, value)`` tuples, or None.

    Broadcast; results of all implementations are concatenated. Called on the event loop at
    every scrape; must be cheap. An exception drops that plugin's samples and is logged.

    Since 0.1.
    """
