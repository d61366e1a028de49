"""Plugin discovery and loading: stevedore finds plugins by entry point, pluggy calls hooks.

Every plugin, built-in or third-party, is an entry point in one of these groups:

=====================  ===========  ==========================================================
group                  slot         what the entry point names
=====================  ===========  ==========================================================
pilothouse.store       store        a :class:`~pilothouse.interfaces.store.Store` class
pilothouse.runtime     runtime      a :class:`~pilothouse.interfaces.runtime.Runtime` class
pilothouse.network     network      a :class:`~pilothouse.interfaces.network.NetworkDriver`
pilothouse.proxy       proxy        a :class:`~pilothouse.interfaces.proxy.ProxyDriver` class
pilothouse.scheduler   scheduler    a class implementing scheduler extension points
pilothouse.admission   admission    an :class:`~pilothouse.interfaces.admission.AdmissionPlugin`
pilothouse.authn       authn        an :class:`~pilothouse.interfaces.auth.Authenticator`
pilothouse.authz       authz        an :class:`~pilothouse.interfaces.auth.Authorizer`
pilothouse.controllers controllers  a :class:`~pilothouse.interfaces.controllers.Controller`
pilothouse.plugins     plugins      a module or object with ``@hookimpl`` broadcast hooks
=====================  ===========  ==========================================================

A class may define ``Options``, a dataclass of its config options; the loader builds it from
the config (:mod:`pilothouse._options` checks names and types) and constructs the plugin as
``cls(options)`` (``cls()`` when it has no ``Options``). Every loaded plugin object is
registered with the pluggy plugin manager under ``"<slot>:<name>"``, so any plugin may also
implement broadcast hooks.

Loading fails closed: a configured plugin that is not installed, fails to import, does not
implement its interface or gets bad options is a :class:`~pilothouse.config.ConfigError` that
names it and says why. Nothing is skipped silently.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import inspect
from typing import Any

import pluggy
import stevedore

from pilothouse import hooks as _hooks
from pilothouse._options import build_options, describe_options
from pilothouse.config import Config, ConfigError, PluginRef

__all__ = ["GROUPS", "InstalledPlugin", "LoadedPlugins", "check_config", "discover",
           "implemented", "load_plugins", "make_plugin_manager"]

#: slot → (entry-point group, interface import path or None, kind)
GROUPS: dict[str, tuple[str, str | None, str]] = {
    "store": ("pilothouse.store", "pilothouse.interfaces.store:Store", "driver"),
    "runtime": ("pilothouse.runtime", "pilothouse.interfaces.runtime:Runtime", "driver"),
    "network": ("pilothouse.network", "pilothouse.interfaces.network:NetworkDriver", "driver"),
    "proxy": ("pilothouse.proxy", "pilothouse.interfaces.proxy:ProxyDriver", "driver"),
    "scheduler": ("pilothouse.scheduler", None, "pipeline"),
    "admission": ("pilothouse.admission",
                  "pilothouse.interfaces.admission:AdmissionPlugin", "pipeline"),
    "authn": ("pilothouse.authn", "pilothouse.interfaces.auth:Authenticator", "pipeline"),
    "authz": ("pilothouse.authz", "pilothouse.interfaces.auth:Authorizer", "pipeline"),
    "controllers": ("pilothouse.controllers",
                    "pilothouse.interfaces.controllers:Controller", "controller"),
    "plugins": ("pilothouse.plugins", None, "hooks"),
}

_SCHEDULER_POINTS = ("QueueSort", "PreFilter", "Filter", "PostFilter", "PreScore", "Score",
                     "Reserve", "Permit", "PreBind", "Bind", "PostBind")


def _resolve(path: str) -> Any:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


@dataclasses.dataclass
class InstalledPlugin:
    """One entry point found on the system, for ``plugins list``."""

    slot: str
    name: str
    target: str
    distribution: str
    version: str
    obj: Any = None
    error: str | None = None

    @property
    def group(self) -> str:
        return GROUPS[self.slot][0]


def _distributions() -> dict[tuple[str, str], tuple[str, str]]:
    """(group, name) → (distribution, version) for every installed entry point."""
    out = {}
    for dist in importlib.metadata.distributions():
        for ep in dist.entry_points:
            if ep.group.startswith("pilothouse."):
                out[(ep.group, ep.name)] = (dist.metadata["Name"], dist.version)
    return out


def discover(slots: list[str] | None = None, load: bool = True) -> list[InstalledPlugin]:
    """List the installed plugins of the given slots (all by default), loading each entry
    point when ``load`` is true (a failure is recorded in ``error``, never raised)."""
    dists = _distributions()
    found = []
    for slot in slots or list(GROUPS):
        group = GROUPS[slot][0]
        # names=[]: stevedore lists the group's entry points without importing any; each is
        # loaded below so that one broken plugin is reported instead of raised.
        mgr = stevedore.NamedExtensionManager(group, names=[],
                                              on_missing_entrypoints_callback=None)
        for ep in sorted(mgr.list_entry_points(), key=lambda e: e.name):
            dist, version = dists.get((group, ep.name), ("?", "?"))
            plugin = InstalledPlugin(slot, ep.name, ep.value, dist, version)
            if load:
                try:
                    plugin.obj = ep.load()
                except Exception as exc:  # any import-time failure is reported, not raised
                    plugin.error = f"{type(exc).__name__}: {exc}"
            found.append(plugin)
    return found


def implemented(slot: str, obj: Any, pm: pluggy.PluginManager | None = None) -> list[str]:
    """Name what ``obj`` implements: its interface (drivers, admission, auth, controllers),
    its scheduler extension points, and any broadcast hooks."""
    out = []
    _, iface_path, _ = GROUPS[slot]
    if iface_path:
        iface = _resolve(iface_path)
        missing = _missing_methods(obj, iface)
        if missing is None:
            out.append(iface.__name__)
        if slot == "admission":
            out = [f"admission.{p}" for p in ("mutate", "validate")
                   if _overrides(obj, iface, p)] or out
    if slot == "scheduler":
        from pilothouse.interfaces import scheduler as sched
        for point in _SCHEDULER_POINTS:
            proto = getattr(sched, point)
            if all(callable(getattr(obj, m, None)) for m in _protocol_methods(proto)):
                out.append(point)
    pm = pm or make_plugin_manager()
    target = obj
    for attr in dir(target):
        if attr.startswith("pilothouse_") and pm.parse_hookimpl_opts(target, attr) is not None:
            out.append(f"hook:{attr}")
    return out


def _protocol_methods(proto: type) -> list[str]:
    return [n for n, v in vars(proto).items() if callable(v) and not n.startswith("_")]


def _overrides(obj: Any, base: type, name: str) -> bool:
    return getattr(obj, name, None) is not getattr(base, name, None)


def _missing_methods(obj: Any, iface: type) -> list[str] | None:
    """None when ``obj`` (a class) implements ``iface``; else the missing method names."""
    if inspect.isclass(obj) and issubclass(obj, iface):
        return None if not getattr(obj, "__abstractmethods__", None) else sorted(
            obj.__abstractmethods__)
    required = sorted(getattr(iface, "__abstractmethods__", ()))
    if not required:  # a base class without abstract methods must be subclassed
        return [f"(is not a subclass of {iface.__module__}.{iface.__name__})"]
    return [m for m in required if not callable(getattr(obj, m, None))] or None


def make_plugin_manager() -> pluggy.PluginManager:
    """A plugin manager with every hookspec module of :mod:`pilothouse.hooks` added."""
    pm = pluggy.PluginManager(_hooks.PROJECT)
    for name in _hooks.SPEC_MODULES:
        pm.add_hookspecs(importlib.import_module(name))
    return pm


@dataclasses.dataclass
class LoadedPlugin:
    """A configured plugin, constructed: ``ref`` from the config, ``instance``, and
    ``installed`` (distribution and version)."""

    ref: PluginRef
    instance: Any
    installed: InstalledPlugin


@dataclasses.dataclass
class LoadedPlugins:
    """Everything a config activates, constructed and registered with ``pm``."""

    config: Config
    pm: pluggy.PluginManager
    drivers: dict[str, LoadedPlugin]
    pipelines: dict[str, list[LoadedPlugin]]
    profiles: dict[str, list[LoadedPlugin]]
    controllers: list[LoadedPlugin]
    hook_plugins: list[InstalledPlugin]

    def driver(self, slot: str) -> Any:
        """The active driver instance of ``slot``; :class:`ConfigError` if the slot is
        empty (the caller is a component that cannot run without it)."""
        if slot not in self.drivers:
            raise ConfigError([f"{slot}: no plugin configured; set '{slot}: {{plugin: NAME}}' "
                               f"(installed: {_names(slot)})"], self.config.source)
        return self.drivers[slot].instance


def _names(slot: str) -> str:
    return ", ".join(p.name for p in discover([slot], load=False)) or "none"


def _construct(ref: PluginRef, installed: dict[tuple[str, str], InstalledPlugin],
               errors: list[str]) -> LoadedPlugin | None:
    where = f"{ref.where}: {ref.slot} plugin {ref.name!r}"
    found = installed.get((ref.slot, ref.name))
    if found is None:
        names = sorted(n for (s, n) in installed if s == ref.slot)
        errors.append(f"{where} is not installed (entry-point group {GROUPS[ref.slot][0]}); "
                      f"installed: {', '.join(names) or 'none'}")
        return None
    if found.error:
        errors.append(f"{where} failed to import: {found.error}")
        return None
    obj = found.obj
    _, iface_path, _ = GROUPS[ref.slot]
    if iface_path:
        missing = _missing_methods(obj, _resolve(iface_path))
        if missing:
            errors.append(f"{where} ({found.target}) does not implement "
                          f"{iface_path.split(':')[1]}: missing {', '.join(missing)}")
            return None
    elif ref.slot == "scheduler" and not implemented(ref.slot, obj):
        errors.append(f"{where} ({found.target}) implements no scheduler extension point")
        return None
    options_cls = getattr(obj, "Options", None)
    options, opt_errors = build_options(options_cls, ref.options, where)
    if opt_errors:
        errors.extend(opt_errors)
        return None
    try:
        instance = obj(options) if options_cls is not None else obj()
    except Exception as exc:
        errors.append(f"{where} failed to start: {type(exc).__name__}: {exc}")
        return None
    return LoadedPlugin(ref, instance, found)


def load_plugins(config: Config) -> LoadedPlugins:
    """Construct every plugin ``config`` activates and register it with a new plugin
    manager; raise :class:`ConfigError` listing every problem. Broadcast plugins (group
    ``pilothouse.plugins``) are all active unless listed in ``plugins.disabled``."""
    installed = {(p.slot, p.name): p for p in discover()}
    errors: list[str] = []
    pm = make_plugin_manager()

    def build(ref: PluginRef) -> LoadedPlugin | None:
        return _construct(ref, installed, errors)

    drivers = {}
    for slot in ("store", "runtime", "network", "proxy"):
        ref = config.driver(slot)
        if ref and (lp := build(ref)):
            drivers[slot] = lp
    pipelines = {}
    for section in ("admission", "authentication", "authorization"):
        pipelines[section] = [lp for lp in map(build, config.pipeline(section)) if lp]
    profiles = {name: [lp for lp in map(build, refs) if lp]
                for name, refs in config.scheduler_profiles().items()}
    controllers = [lp for lp in map(build, config.controllers()) if lp]
    disabled = config.disabled_plugins()
    hook_plugins = []
    for (slot, name), plugin in sorted(installed.items()):
        if slot != "plugins":
            continue
        if name in disabled:
            disabled.discard(name)
            continue
        if plugin.error:
            errors.append(f"plugins: broadcast plugin {name!r} ({plugin.distribution}) failed "
                          f"to import: {plugin.error}; uninstall it or list it in "
                          f"plugins.disabled")
            continue
        hook_plugins.append(plugin)
    for name in sorted(disabled):
        errors.append(f"plugins.disabled: {name!r} is not an installed broadcast plugin")
    if errors:
        raise ConfigError(errors, config.source)
    everything = list(drivers.values()) + [lp for v in pipelines.values() for lp in v] + [
        lp for v in profiles.values() for lp in v] + controllers
    for lp in everything:
        name = f"{lp.ref.slot}:{lp.ref.name}"
        if pm.get_plugin(name) is None:
            pm.register(lp.instance, name=name)
    for plugin in hook_plugins:
        target = plugin.obj() if inspect.isclass(plugin.obj) else plugin.obj
        try:
            pm.register(target, name=f"plugins:{plugin.name}")
        except (ValueError, pluggy.PluginValidationError) as exc:
            raise ConfigError([f"plugins: broadcast plugin {plugin.name!r}: {exc}"],
                              config.source) from None
    try:
        pm.check_pending()  # a hookimpl named pilothouse_* that matches no spec is a typo
    except pluggy.PluginValidationError as exc:
        raise ConfigError([f"plugin {getattr(exc.plugin, '__name__', exc.plugin)!r}: {exc}"], config.source) from None
    return LoadedPlugins(config, pm, drivers, pipelines, profiles, controllers, hook_plugins)


def check_config(config: Config) -> LoadedPlugins:
    """Validate everything in ``config`` by loading it (``pilothouse config check``)."""
    return load_plugins(config)
