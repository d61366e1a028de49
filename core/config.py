"""The config file: which plugin fills each slot, in which order, with which options.

Where the file comes from, first match wins:

1. the ``--config PATH`` option of any ``pilothouse`` command;
2. the ``PILOTHOUSE_CONFIG`` environment variable;
3. ``$XDG_CONFIG_HOME/pilothouse/config.yaml`` (``~/.config/pilothouse/config.yaml``) if it
   exists;
4. otherwise no file: the built-in default profile alone.

A file's top-level sections replace the same sections of the default profile (no deep
merge: what a section says is exactly what runs); sections it leaves out come from the
default profile. ``base: none`` starts from an empty profile instead. The sections::

    store:     {plugin: raft, options: {...}}        # driver slots: store, runtime,
    runtime:   {plugin: containerd, options: {...}}  #   network, proxy; plugin: null
    network:   {plugin: null}                        #   leaves the slot empty
    proxy:     {plugin: iptables}
    scheduler:
      profiles:                                      # one per spec.schedulerName
        - schedulerName: default-scheduler
          plugins:                                   # in order; weight used by Score
            - {name: NodeResourcesFit, weight: 1, options: {...}}
    admission:      {plugins: [{name: NamespaceLifecycle, options: {...}}, ...]}
    authentication: {plugins: [...]}
    authorization:  {plugins: [{name: always-allow}]}
    controllers:
      enabled: [replicaset, deployment]
      options: {deployment: {...}}
    plugins:
      disabled: [some-hook-plugin]                   # installed broadcast plugins not to load
    components: {...}                                # settings of the component hosts

Validation (:func:`check_config` and ``pilothouse config check``) reports every problem at
once: unknown sections or keys, unknown plugin names (listing the installed ones), plugins
that fail to import (with the exception), bad options (naming plugin and option).
"""

from __future__ import annotations

import copy
import dataclasses
import os
import pathlib
from typing import Any

import yaml

__all__ = ["Config", "ConfigError", "DRIVER_SLOTS", "PIPELINE_SLOTS", "default_profile",
           "find_config_path", "load_config", "parse_config"]

#: Slots with exactly one active driver.
DRIVER_SLOTS = ("store", "runtime", "network", "proxy")
#: Sections holding ordered plugin lists, and the plugin slot (entry-point group) they use.
PIPELINE_SLOTS = {"admission": "admission", "authentication": "authn",
                  "authorization": "authz"}
_SECTIONS = set(DRIVER_SLOTS) | set(PIPELINE_SLOTS) | {
    "scheduler", "controllers", "plugins", "components", "base"}
_DEFAULT_PROFILE = pathlib.Path(__file__).with_name("default_profile.yaml")


class ConfigError(Exception):
    """The config is invalid. ``errors`` lists every problem, one sentence each."""

    def __init__(self, errors: list[str], source: str = "config"):
        self.errors, self.source = list(errors), source
        super().__init__(f"{source}: " + "; ".join(errors) if len(errors) == 1 else
                         f"{source}: {len(errors)} problems:\n  - " + "\n  - ".join(errors))


@dataclasses.dataclass(frozen=True)
class PluginRef:
    """One plugin named by the config: its ``slot`` (entry-point group short name), ``name``,
    raw ``options`` mapping, ``weight`` (scheduler scoring only) and ``where`` (for errors,
    e.g. ``scheduler.profiles[0].plugins[2]``)."""

    slot: str
    name: str
    options: dict
    weight: int = 1
    where: str = ""


@dataclasses.dataclass(frozen=True)
class Config:
    """A parsed config. ``raw`` is the effective document (default profile merged);
    ``source`` the file it came from (``"<default profile>"`` if none)."""

    raw: dict
    source: str

    def driver(self, slot: str) -> PluginRef | None:
        """The plugin configured for a driver slot, or None if the slot is empty."""
        section = self.raw.get(slot) or {}
        name = section.get("plugin")
        return PluginRef(slot, name, section.get("options") or {}, where=slot) if name else None

    def pipeline(self, section: str) -> list[PluginRef]:
        """The ordered plugins of ``admission``, ``authentication`` or ``authorization``."""
        entries = (self.raw.get(section) or {}).get("plugins") or []
        return [PluginRef(PIPELINE_SLOTS[section], e["name"], e.get("options") or {},
                          where=f"{section}.plugins[{i}]") for i, e in enumerate(entries)]

    def scheduler_profiles(self) -> dict[str, list[PluginRef]]:
        """schedulerName → ordered, weighted scheduler plugins."""
        out = {}
        for i, prof in enumerate((self.raw.get("scheduler") or {}).get("profiles") or []):
            out[prof["schedulerName"]] = [
                PluginRef("scheduler", e["name"], e.get("options") or {},
                          e.get("weight", 1), f"scheduler.profiles[{i}].plugins[{j}]")
                for j, e in enumerate(prof.get("plugins") or [])]
        return out

    def controllers(self) -> list[PluginRef]:
        """The enabled controllers, in configured order, with their options."""
        section = self.raw.get("controllers") or {}
        opts = section.get("options") or {}
        return [PluginRef("controllers", n, opts.get(n) or {}, where=f"controllers.enabled[{i}]")
                for i, n in enumerate(section.get("enabled") or [])]

    def disabled_plugins(self) -> set[str]:
        """Names of installed broadcast plugins (group ``pilothouse.plugins``) not to load."""
        return set((self.raw.get("plugins") or {}).get("disabled") or [])

    def component(self, name: str) -> dict:
        """Settings of one component host (``components.<name>``), validated by that host."""
        return dict((self.raw.get("components") or {}).get(name) or {})

    def all_refs(self) -> list[PluginRef]:
        """Every plugin the config names, drivers first."""
        refs = [r for r in (self.driver(s) for s in DRIVER_SLOTS) if r]
        for section in PIPELINE_SLOTS:
            refs += self.pipeline(section)
        for plugins in self.scheduler_profiles().values():
            refs += plugins
        return refs + self.controllers()


def default_profile() -> dict:
    """The built-in default profile (a fresh copy), kept as data in
    ``default_profile.yaml`` beside this module."""
    return yaml.safe_load(_DEFAULT_PROFILE.read_text())


def find_config_path(explicit: str | os.PathLike | None = None) -> pathlib.Path | None:
    """Resolve the config file path by the rules in the module docstring."""
    if explicit:
        return pathlib.Path(explicit)
    if os.environ.get("PILOTHOUSE_CONFIG"):
        return pathlib.Path(os.environ["PILOTHOUSE_CONFIG"])
    home = pathlib.Path(os.environ.get("XDG_CONFIG_HOME") or pathlib.Path.home() / ".config")
    candidate = home / "pilothouse" / "config.yaml"
    return candidate if candidate.exists() else None


def _plugin_entry(value: Any, where: str, errors: list[str], weighted: bool) -> None:
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        errors.append(f"{where}: must be a mapping with a string 'name'")
        return
    allowed = {"name", "options"} | ({"weight"} if weighted else set())
    for key in set(value) - allowed:
        errors.append(f"{where}: unknown key {key!r}; allowed: {', '.join(sorted(allowed))}")
    if weighted and "weight" in value and (not isinstance(value["weight"], int)
                                           or isinstance(value["weight"], bool)
                                           or value["weight"] < 0):
        errors.append(f"{where}.weight: must be a non-negative integer")
    if value.get("options") is not None and not isinstance(value["options"], dict):
        errors.append(f"{where}.options: must be a mapping")


def _check_structure(doc: dict) -> list[str]:
    errors: list[str] = []
    for key in doc:
        if key not in _SECTIONS:
            errors.append(f"unknown section {key!r}; sections are: {', '.join(sorted(_SECTIONS))}")
    for slot in DRIVER_SLOTS:
        section = doc.get(slot)
        if section is None:
            continue
        if not isinstance(section, dict):
            errors.append(f"{slot}: must be a mapping like {{plugin: NAME, options: {{...}}}}")
            continue
        for key in set(section) - {"plugin", "options"}:
            errors.append(f"{slot}: unknown key {key!r}; allowed: options, plugin")
        if section.get("plugin") is not None and not isinstance(section["plugin"], str):
            errors.append(f"{slot}.plugin: must be a plugin name (string) or null")
        if section.get("options") is not None and not isinstance(section["options"], dict):
            errors.append(f"{slot}.options: must be a mapping")
    for name in PIPELINE_SLOTS:
        section = doc.get(name)
        if section is None:
            continue
        if not isinstance(section, dict) or not isinstance(section.get("plugins", []), list):
            errors.append(f"{name}: must be a mapping like {{plugins: [{{name: NAME}}, ...]}}")
            continue
        for key in set(section) - {"plugins"}:
            errors.append(f"{name}: unknown key {key!r}; allowed: plugins")
        for i, entry in enumerate(section.get("plugins") or []):
            _plugin_entry(entry, f"{name}.plugins[{i}]", errors, weighted=False)
    sched = doc.get("scheduler")
    if sched is not None:
        if not isinstance(sched, dict) or not isinstance(sched.get("profiles", []), list):
            errors.append("scheduler: must be a mapping like {profiles: [...]}")
        else:
            for key in set(sched) - {"profiles"}:
                errors.append(f"scheduler: unknown key {key!r}; allowed: profiles")
            seen = set()
            for i, prof in enumerate(sched.get("profiles") or []):
                where = f"scheduler.profiles[{i}]"
                if not isinstance(prof, dict) or not isinstance(prof.get("schedulerName"), str):
                    errors.append(f"{where}: must be a mapping with a string 'schedulerName'")
                    continue
                if prof["schedulerName"] in seen:
                    errors.append(f"{where}.schedulerName: duplicate {prof['schedulerName']!r}")
                seen.add(prof["schedulerName"])
                for key in set(prof) - {"schedulerName", "plugins"}:
                    errors.append(f"{where}: unknown key {key!r}; allowed: plugins, schedulerName")
                if not isinstance(prof.get("plugins", []), list):
                    errors.append(f"{where}.plugins: must be a list")
                    continue
                for j, entry in enumerate(prof.get("plugins") or []):
                    _plugin_entry(entry, f"{where}.plugins[{j}]", errors, weighted=True)
    ctrl = doc.get("controllers")
    if ctrl is not None:
        if not isinstance(ctrl, dict):
            errors.append("controllers: must be a mapping like {enabled: [...], options: {...}}")
        else:
            for key in set(ctrl) - {"enabled", "options"}:
                errors.append(f"controllers: unknown key {key!r}; allowed: enabled, options")
            enabled = ctrl.get("enabled") or []
            if not isinstance(enabled, list) or not all(isinstance(n, str) for n in enabled):
                errors.append("controllers.enabled: must be a list of controller names")
            opts = ctrl.get("options") or {}
            if not isinstance(opts, dict):
                errors.append("controllers.options: must be a mapping of name to options")
            elif isinstance(enabled, list):
                for n in set(opts) - set(enabled):
                    errors.append(f"controllers.options: {n!r} has options but is not enabled")
    plugins = doc.get("plugins")
    if plugins is not None and (not isinstance(plugins, dict)
                                or set(plugins) - {"disabled"}
                                or not isinstance(plugins.get("disabled", []), list)):
        errors.append("plugins: must be a mapping like {disabled: [name, ...]}")
    if doc.get("components") is not None and not isinstance(doc["components"], dict):
        errors.append("components: must be a mapping of component name to settings")
    if doc.get("base", "default") not in ("default", "none"):
        errors.append("base: must be 'default' or 'none'")
    return errors


def parse_config(doc: Any, source: str = "<config>") -> Config:
    """Build a :class:`Config` from a parsed YAML document (a mapping or None), merging the
    default profile. Checks structure only; plugin names and options are checked by
    :func:`pilothouse.plugins.check_config`. Raises :class:`ConfigError`."""
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ConfigError(["the document must be a mapping of sections"], source)
    errors = _check_structure(doc)
    if errors:
        raise ConfigError(errors, source)
    merged = default_profile() if doc.get("base", "default") == "default" else {}
    merged.update(copy.deepcopy({k: v for k, v in doc.items() if k != "base"}))
    return Config(merged, source)


def load_config(path: str | os.PathLike | None = None) -> Config:
    """Load the config from ``path`` or the default locations (module docstring)."""
    found = find_config_path(path)
    if found is None:
        return parse_config({}, "<default profile>")
    try:
        text = found.read_text()
    except OSError as exc:
        raise ConfigError([f"cannot read config file: {exc.strerror}"], str(found)) from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([f"not valid YAML: {exc}"], str(found)) from None
    return parse_config(doc, str(found))
