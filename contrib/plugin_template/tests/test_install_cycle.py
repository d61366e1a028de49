"""The third-party experience end to end: pip install, plugins list, config, use, uninstall.

The package is installed with ``pip install --target`` into a temporary directory that the
``pilothouse`` subprocesses see through PYTHONPATH; "uninstalled" is the same commands without
it. This keeps the developer's environment untouched.
"""

import json
import os
import pathlib
import subprocess
import sys

import pytest
import yaml

HERE = pathlib.Path(__file__).resolve().parents[1]

CONFIG = {"base": "none", "admission": {"plugins": [{"name": "require-labels",
                                     "options": {"labels": ["team"], "kinds": ["Deployment"]}}]}}

USE_IT = """
import asyncio, sys
from pilothouse.config import load_config
from pilothouse.plugins import load_plugins
from pilothouse.interfaces.admission import AdmissionRequest
loaded = load_plugins(load_config(sys.argv[1]))
(plugin,) = loaded.pipelines["admission"]
req = AdmissionRequest(operation="CREATE", group="apps", version="v1", kind="Deployment",
                       resource="deployments", namespace="default", name="web",
                       object={"metadata": {"name": "web"}})
print(plugin.ref.name, plugin.installed.distribution, asyncio.run(plugin.instance.validate(req)).message)
"""


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--target", str(target), str(HERE)],
                   check=True, timeout=300)
    return target


def run(args, target, tmp_path, config=None):
    env = {k: v for k, v in os.environ.items() if k != "PILOTHOUSE_CONFIG"}
    env["XDG_CONFIG_HOME"] = str(tmp_path)
    if target:
        env["PYTHONPATH"] = str(target)
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                          timeout=120)


def test_installed_plugin_is_listed_configured_and_used(target, tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    listed = run(["-m", "pilothouse.cli", "plugins", "list", "-o", "json", "--config", str(cfg)],
                 target, tmp_path)
    rows = {(r["slot"], r["name"]): r for r in json.loads(listed.stdout)["plugins"]}
    adm = rows[("admission", "require-labels")]
    assert (adm["distribution"], adm["version"], adm["active"]) == (
        "pilothouse-plugin-template", "0.1.0", True)
    assert adm["implements"] == ["admission.validate"]
    assert rows[("plugins", "template")]["implements"] == ["hook:pilothouse_add_commands"]

    check = run(["-m", "pilothouse.cli", "config", "check", "--config", str(cfg)], target, tmp_path)
    assert check.returncode == 0, check.stderr
    assert "admission      require-labels" in check.stdout

    used = run(["-c", USE_IT, str(cfg)], target, tmp_path)
    assert used.returncode == 0, used.stderr
    assert used.stdout.strip() == ("require-labels pilothouse-plugin-template Deployment 'web' "
                                   "is missing required label(s): team")

    manifest = tmp_path / "app.yaml"
    manifest.write_text("kind: Deployment\nmetadata: {name: web}\n---\n"
                        "kind: Deployment\nmetadata: {name: ok, labels: {team: a}}\n")
    cmd = run(["-m", "pilothouse.cli", "check-labels", str(manifest)], target, tmp_path)
    assert cmd.returncode == 1 and f"{manifest}: Deployment web: missing team" in cmd.stdout


def test_bad_option_names_plugin_and_option(target, tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({"base": "none", "admission": {"plugins": [
        {"name": "require-labels", "options": {"label": ["x"]}}]}}))
    check = run(["-m", "pilothouse.cli", "config", "check", "--config", str(cfg)], target, tmp_path)
    assert check.returncode == 1
    assert ("admission.plugins[0]: admission plugin 'require-labels': unknown option 'label'; "
            "known options: kinds, labels") in check.stderr


def test_uninstalled_plugin_is_a_clear_error(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    check = run(["-m", "pilothouse.cli", "config", "check", "--config", str(cfg)], None, tmp_path)
    assert check.returncode == 1
    assert ("admission.plugins[0]: admission plugin 'require-labels' is not installed "
            "(entry-point group pilothouse.admission); installed: none") in check.stderr
