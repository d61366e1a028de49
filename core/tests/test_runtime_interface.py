"""The runtime driver interface documents every method and keeps its error contract."""

import inspect

import pytest

from pilothouse.interfaces import runtime as rt


def _methods():
    return [(n, f) for n, f in vars(rt.Runtime).items()
            if inspect.iscoroutinefunction(f) or (callable(f) and not n.startswith("_"))]


@pytest.mark.parametrize("name,func", _methods(), ids=[n for n, _ in _methods()])
def test_every_method_is_documented(name, func):
    doc = inspect.getdoc(func) or ""
    assert "Since 0.1" in doc, f"Runtime.{name} needs a docstring ending with its version"
    assert "Called" in doc, f"Runtime.{name}: say who calls it and when"


def test_every_method_is_a_coroutine():
    for name, func in _methods():
        assert inspect.iscoroutinefunction(func), name


def test_public_names_are_documented():
    for name in rt.__all__:
        obj = getattr(rt, name)
        if inspect.isclass(obj):
            assert inspect.getdoc(obj), name


def test_errors_are_runtime_errors():
    for name in ("NotFound", "ImageNotFound", "AlreadyExists", "InvalidArgument",
                 "ExecTimeout", "Unavailable", "Unsupported", "ImagePullError"):
        cls = getattr(rt, name)
        assert issubclass(cls, rt.ContainerRuntimeError)
        assert issubclass(cls, RuntimeError)
    assert issubclass(rt.ImageNotFound, rt.NotFound)
    err = rt.ImageNotFound("docker.io/library/x:1", "import it")
    assert err.kind == "image" and err.ref == "docker.io/library/x:1" and "import it" in str(err)


def test_minimal_driver_is_constructible():
    abstract = rt.Runtime.__abstractmethods__

    async def stub(self, *a, **k):
        raise NotImplementedError

    cls = type("Minimal", (rt.Runtime,), {name: stub for name in abstract})
    driver = cls()
    assert driver.features == frozenset()


def test_exec_result_unpacks():
    code, out, err = rt.ExecResult(3, b"o", b"e")
    assert (code, out, err) == (3, b"o", b"e")
