"""Import boundaries (ARCHITECTURE.md rule 3): the core imports no plugin; a plugin imports
only the core's public API; plugins never import each other.

A plugin's import packages are the top-level packages inside its folder. The core's private
modules are those whose name (or a parent's) starts with an underscore, plus
``pilothouse.apiserver`` and the other component implementations listed in PRIVATE.
"""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
# Core packages that are implementation, not contract: plugins must not import them.
PRIVATE = ("pilothouse.apiserver",)


def _plugin_packages():
    owner = {}
    for top in ("plugins", "contrib"):
        for folder in (ROOT / top).iterdir():
            if not folder.is_dir():
                continue
            for base in (folder, folder / "src"):
                if base.is_dir():
                    for pkg in base.iterdir():
                        if (pkg / "__init__.py").is_file() and pkg.name not in ("tests", "test"):
                            owner[pkg.name] = folder
    return owner


def _imports(path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, node.lineno
            for alias in node.names:
                yield f"{node.module}.{alias.name}", node.lineno


def _py_files(folder):
    return [p for p in folder.rglob("*.py")
            if not {".tox", "build", ".venv"} & set(p.parts)]


def test_core_imports_no_plugin():
    owner = _plugin_packages()
    bad = [f"{p.relative_to(ROOT)}:{line} imports {mod}"
           for p in _py_files(ROOT / "core") for mod, line in _imports(p)
           if mod.split(".")[0] in owner]
    assert not bad, "the core must not import plugins:\n" + "\n".join(bad)


def test_plugins_import_no_other_plugin_and_only_public_core():
    owner = _plugin_packages()
    bad = []
    for pkg, folder in owner.items():
        for p in _py_files(folder):
            for mod, line in _imports(p):
                top = mod.split(".")[0]
                if top in owner and owner[top] != folder:
                    bad.append(f"{p.relative_to(ROOT)}:{line} imports plugin {mod}")
                if top == "pilothouse":
                    parts = mod.split(".")
                    private = [x for x in parts[1:] if x.startswith("_") and not x.startswith("__")]
                    if private or mod.startswith(PRIVATE):
                        bad.append(f"{p.relative_to(ROOT)}:{line} imports private {mod}")
    assert not bad, "\n".join(bad)


def test_the_check_sees_plugins():
    # guard against the check silently passing because it found nothing to check
    assert _plugin_packages(), "no plugin packages found under plugins/ or contrib/"
