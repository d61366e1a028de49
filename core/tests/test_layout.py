"""The folder tree is the design card (ARCHITECTURE.md): check the parts a reader relies on."""

import pathlib
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _pyproject(path):
    return tomllib.loads((path / "pyproject.toml").read_text())


def test_every_core_package_is_listed_in_pyproject():
    listed = set(_pyproject(ROOT)["tool"]["setuptools"]["packages"])
    on_disk = {"pilothouse" + ("." + ".".join(p.parent.relative_to(ROOT / "core").parts)
                               if p.parent != ROOT / "core" else "")
               for p in (ROOT / "core").rglob("__init__.py") if "tests" not in p.parts}
    assert on_disk <= listed, f"add to [tool.setuptools] packages: {sorted(on_disk - listed)}"


def _distributions():
    for top in ("plugins", "contrib"):
        for folder in sorted((ROOT / top).iterdir()):
            if folder.is_dir() and not folder.name.startswith((".", "_")):
                yield folder


def test_each_plugin_is_its_own_distribution_with_readme_and_tests():
    folders = list(_distributions())
    for folder in folders:
        assert (folder / "pyproject.toml").is_file(), f"{folder}: needs its own pyproject.toml"
        assert (folder / "README.md").is_file(), f"{folder}: needs a README.md"
        assert (folder / "tests").is_dir(), f"{folder}: needs tests/"
        project = _pyproject(folder)["project"]
        assert project["name"].startswith("pilothouse-"), folder
        deps = " ".join(project.get("dependencies", []))
        assert "pilothouse" in deps, f"{folder}: must depend on the core distribution"


def test_plugins_register_through_pilothouse_entry_point_groups():
    for folder in _distributions():
        eps = _pyproject(folder)["project"].get("entry-points", {})
        groups = [g for g in eps if g.startswith("pilothouse.")]
        assert groups, f"{folder}: registers no pilothouse.* entry point"


def test_design_card_layout_exists():
    for path in ("pyproject.toml", "README.md", "tox.ini", "core", "core/api", "core/hooks",
                 "plugins", "contrib", "tests", ".ci/run"):
        assert (ROOT / path).exists(), path
