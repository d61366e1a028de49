"""The CLI as a user runs it: a real subprocess, real entry points."""

import json
import os
import subprocess
import sys

import yaml


def run(args, env_extra=None, cwd=None):
    env = {**os.environ, **(env_extra or {})}
    env.pop("PILOTHOUSE_CONFIG", None)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "pilothouse.cli", *args], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=120)


def test_plugins_list_json_and_table(fake_dist, fake_store_source, tmp_path):
    STORE_SRC = fake_store_source
    site = fake_dist("pilothouse-fake", {"pilothouse.store": {"good": "fakestore:GoodStore"}},
                     {"fakestore.py": STORE_SRC})
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"store": {"plugin": "good", "options": {"path": "/d"}}}))
    env = {"PYTHONPATH": str(site), "XDG_CONFIG_HOME": str(tmp_path)}
    out = run(["plugins", "list", "--output", "json", "--config", str(cfg)], env)
    assert out.returncode == 0, out.stderr
    rows = {(r["slot"], r["name"]): r for r in json.loads(out.stdout)["plugins"]}
    good = rows[("store", "good")]
    assert good["active"] is True and good["distribution"] == "pilothouse-fake"
    assert good["version"] == "1.2.3" and good["group"] == "pilothouse.store"
    assert "Store" in good["implements"] and "hook:pilothouse_configure" in good["implements"]
    assert rows[("authz", "always-allow")]["active"] is True
    table = run(["plugins", "list", "--config", str(cfg)], env)
    header, *lines = table.stdout.splitlines()
    assert header.split() == ["SLOT", "NAME", "DISTRIBUTION", "VERSION", "ACTIVE", "IMPLEMENTS"]
    assert any(line.split()[:5] == ["store", "good", "pilothouse-fake", "1.2.3", "yes"]
               for line in lines)


def test_config_check_reports_problems_and_exit_codes(fake_dist, fake_store_source, tmp_path):
    STORE_SRC = fake_store_source
    site = fake_dist("pilothouse-fake", {"pilothouse.store": {"good": "fakestore:GoodStore"}},
                     {"fakestore.py": STORE_SRC})
    env = {"PYTHONPATH": str(site), "XDG_CONFIG_HOME": str(tmp_path)}
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"store": {"plugin": "good", "options": {"path": "/d"}}}))
    ok = run(["config", "check", "--config", str(cfg)], env)
    assert ok.returncode == 0, ok.stderr
    assert "store          good (pilothouse-fake 1.2.3)" in ok.stdout
    cfg.write_text(yaml.safe_dump({"store": {"plugin": "god"}}))
    bad = run(["config", "check", "--config", str(cfg)], env)
    assert bad.returncode == 1
    assert "store plugin 'god' is not installed" in bad.stderr and "good" in bad.stderr
    # the same through the environment variable
    bad_env = run(["config", "check"], {**env, "PILOTHOUSE_CONFIG": str(cfg)})
    assert bad_env.returncode == 1 and "'god'" in bad_env.stderr


def test_config_show_prints_the_effective_config(tmp_path):
    out = run(["config", "show"], {"XDG_CONFIG_HOME": str(tmp_path)})
    assert out.returncode == 0
    doc = yaml.safe_load(out.stdout)
    assert doc["store"]["plugin"] == "raft" and "# effective config from <default profile>" in out.stdout


def test_no_command_prints_help():
    out = run([])
    assert out.returncode == 2 and "plugins" in out.stdout
