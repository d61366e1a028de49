"""Config parsing: structure checks, the default profile, and where the file comes from."""

import pytest
import yaml

from pilothouse.config import ConfigError, default_profile, find_config_path, load_config, parse_config


def test_default_profile_is_data_and_complete():
    prof = default_profile()
    assert prof["store"]["plugin"] == "raft"
    assert {"store", "runtime", "network", "proxy", "scheduler", "admission",
            "authentication", "authorization", "controllers"} <= set(prof)


def test_a_section_replaces_the_default_section_whole():
    cfg = parse_config({"store": {"plugin": "etcd", "options": {"endpoints": ["a:1"]}}})
    assert cfg.driver("store").name == "etcd"
    assert cfg.driver("store").options == {"endpoints": ["a:1"]}
    assert [r.name for r in cfg.pipeline("authorization")] == ["always-allow"]  # from default


def test_base_none_starts_empty():
    cfg = parse_config({"base": "none"})
    assert cfg.driver("store") is None and cfg.all_refs() == []


def test_pipelines_keep_configured_order_and_weights():
    cfg = parse_config({"scheduler": {"profiles": [
        {"schedulerName": "a", "plugins": [{"name": "Z", "weight": 3}, {"name": "A"}]},
        {"schedulerName": "b", "plugins": []}]},
        "admission": {"plugins": [{"name": "second"}, {"name": "first"}]}})
    profiles = cfg.scheduler_profiles()
    assert [(r.name, r.weight) for r in profiles["a"]] == [("Z", 3), ("A", 1)]
    assert profiles["b"] == []
    assert [r.name for r in cfg.pipeline("admission")] == ["second", "first"]
    assert profiles["a"][0].where == "scheduler.profiles[0].plugins[0]"


def test_every_structural_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as info:
        parse_config({"stroe": {}, "store": {"plugin": 3, "colour": 1},
                      "scheduler": {"profiles": [{"schedulerName": "x", "plugins": [
                          {"name": "A", "weight": -1}, {"nme": "B"}]},
                          {"schedulerName": "x"}]},
                      "controllers": {"enabled": ["a"], "options": {"b": {}}},
                      "admission": {"plugins": [{"name": "A", "options": []}]}})
    text = str(info.value)
    for fragment in ("unknown section 'stroe'", "store: unknown key 'colour'",
                     "store.plugin: must be a plugin name",
                     "scheduler.profiles[0].plugins[0].weight: must be a non-negative integer",
                     "scheduler.profiles[0].plugins[1]: must be a mapping with a string 'name'",
                     "scheduler.profiles[1].schedulerName: duplicate 'x'",
                     "controllers.options: 'b' has options but is not enabled",
                     "admission.plugins[0].options: must be a mapping"):
        assert fragment in text
    assert len(info.value.errors) == 8


def test_lookup_order(tmp_path, monkeypatch):
    explicit, env, xdg = tmp_path / "e.yaml", tmp_path / "env.yaml", tmp_path / "xdg"
    monkeypatch.delenv("PILOTHOUSE_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    assert find_config_path() is None
    (xdg / "pilothouse").mkdir(parents=True)
    (xdg / "pilothouse" / "config.yaml").write_text("{}")
    assert find_config_path() == xdg / "pilothouse" / "config.yaml"
    monkeypatch.setenv("PILOTHOUSE_CONFIG", str(env))
    assert find_config_path() == env
    assert find_config_path(explicit) == explicit


def test_load_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("store: [unclosed")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.yaml")
    bad.write_text(yaml.safe_dump(["a list"]))
    with pytest.raises(ConfigError, match="must be a mapping of sections"):
        load_config(bad)
