"""Every hook spec and every interface method is documented (STYLE.md: the contract is the
product). A new hook or method without a docstring, or without the version it appeared in,
fails here."""

import importlib
import inspect
import pkgutil

import pytest

import pilothouse.interfaces
from pilothouse import hooks
from pilothouse.plugins import make_plugin_manager


def _hookspecs():
    for modname in hooks.SPEC_MODULES:
        module = importlib.import_module(modname)
        for name, fn in vars(module).items():
            if name.startswith("pilothouse_") and callable(fn):
                yield modname, name, fn


def _interface_methods():
    for info in pkgutil.iter_modules(pilothouse.interfaces.__path__):
        module = importlib.import_module(f"pilothouse.interfaces.{info.name}")
        for cname, cls in vars(module).items():
            if not inspect.isclass(cls) or cls.__module__ != module.__name__:
                continue
            if cname.startswith("_"):
                continue
            yield module.__name__, cname, None, cls
            for mname, member in vars(cls).items():
                if mname.startswith("_") or not callable(member) or isinstance(member, type):
                    continue
                yield module.__name__, cname, mname, member


HOOKS = list(_hookspecs())
METHODS = list(_interface_methods())


def test_there_is_a_spec_module_per_area():
    areas = {m.rsplit(".", 1)[1] for m in hooks.SPEC_MODULES}
    assert {"store", "scheduler", "admission", "runtime", "network", "proxy", "controllers",
            "auth", "node", "lifecycle"} <= areas
    assert len(HOOKS) >= 10


@pytest.mark.parametrize("module,name,fn", HOOKS, ids=[h[1] for h in HOOKS])
def test_hookspec_is_documented(module, name, fn):
    doc = inspect.getdoc(fn) or ""
    assert len(doc) > 80, f"{module}.{name} needs a docstring saying who calls it and when"
    assert "Since " in doc, f"{module}.{name}: say the version it appeared in ('Since 0.1.')"
    for param in inspect.signature(fn).parameters:
        assert param in doc, f"{module}.{name}: document parameter {param!r}"


@pytest.mark.parametrize("module,cls,method,obj", METHODS,
                         ids=[f"{m[1]}.{m[2] or ''}" for m in METHODS])
def test_interface_member_is_documented(module, cls, method, obj):
    doc = inspect.getdoc(obj) or ""
    where = f"{module}.{cls}" + (f".{method}" if method else "")
    assert doc.strip(), f"{where} has no docstring"


def test_every_interface_module_states_its_version():
    for info in pkgutil.iter_modules(pilothouse.interfaces.__path__):
        module = importlib.import_module(f"pilothouse.interfaces.{info.name}")
        assert "0.1" in (module.__doc__ or ""), f"{module.__name__}: add its version history"


def test_all_hookspecs_load_into_a_plugin_manager():
    pm = make_plugin_manager()
    names = {h[1] for h in HOOKS}
    assert names <= {h for h in dir(pm.hook) if h.startswith("pilothouse_")}
