"""Pluggy hook specifications of Pilothouse: the broadcast hooks.

Three kinds of extension exist (STYLE.md): *drivers* (one per slot, see
:mod:`pilothouse.interfaces`), *ordered pipelines* (scheduler profiles, admission,
authentication, authorization; ordered by the config file) and *broadcast hooks*, specified
here, where every implementation registered with the plugin manager is called.

One module per area, hooks in call order:

=====================  ==================================================================
module                 hooks
=====================  ==================================================================
``lifecycle``          configure, commands, kinds, component start/stop, metrics
``store``              store opened/compacted
``auth``               request authenticated, authorization decided (audit)
``admission``          admission decision
``scheduler``          pod scheduled / unschedulable
``controllers``        controller started, object reconciled
``node``               node labels, pod synced
``runtime``            container started / exited
``network``            pod attached / detached
``proxy``              rules applied
=====================  ==================================================================

Writing an implementation::

    from pilothouse.hooks import hookimpl

    class MyPlugin:
        @hookimpl
        def pilothouse_component_started(self, component, config):
            ...

and register it in ``pyproject.toml`` under the entry-point group ``pilothouse.plugins``
(any driver or pipeline plugin may also implement hooks; it is registered with the plugin
manager under its entry-point name).

Rules for every hook (pluggy semantics plus ours):

* Hooks are called with keyword arguments only; an implementation may accept any subset
  of the parameters, so adding a parameter never breaks an implementation. Parameters are
  never renamed or reordered.
* Unless a spec says ``firstresult``, every implementation is called and the results are
  returned as a list in pluggy's order (last registered first). Nothing in the core depends
  on that order; where order matters the core uses a configured pipeline instead.
* An exception raised by an implementation propagates to the caller, which documents what
  it does with it (usually: log with the plugin's name and go on for observation hooks,
  fail the operation for contributing hooks).
* Observation hooks are called on the component's event loop and must not block; hand long
  work to a thread or task.
"""

from pilothouse.hooks._markers import PROJECT, hookimpl, hookspec

#: The hookspec modules, in the order they are added to a plugin manager.
SPEC_MODULES = (
    "pilothouse.hooks.lifecycle",
    "pilothouse.hooks.store",
    "pilothouse.hooks.auth",
    "pilothouse.hooks.admission",
    "pilothouse.hooks.scheduler",
    "pilothouse.hooks.controllers",
    "pilothouse.hooks.node",
    "pilothouse.hooks.runtime",
    "pilothouse.hooks.network",
    "pilothouse.hooks.proxy",
)

__all__ = ["PROJECT", "SPEC_MODULES", "hookimpl", "hookspec"]
