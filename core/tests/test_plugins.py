"""Discovery and loading: stevedore finds, the config chooses, pluggy calls; fail closed."""

import pytest

from pilothouse.config import ConfigError, parse_config
from pilothouse.hooks import hookimpl
from pilothouse.plugins import discover, implemented, load_plugins


HOOKS_SRC = '''
from pilothouse.hooks import hookimpl
import fakestore

@hookimpl
def pilothouse_configure(config):
    fakestore.CALLS.append(("hooks", config.source))
'''

SCHED_SRC = '''
from pilothouse.interfaces.scheduler import Status
class Spread:
    def filter(self, state, pod, node): return Status()
    def score(self, state, pod, node): return 1
    def normalize_scores(self, state, pod, scores): return scores
class Nothing:
    pass
'''


@pytest.fixture
def fakes(fake_dist, fake_store_source):
    STORE_SRC = fake_store_source
    fake_dist("pilothouse-fake", {
        "pilothouse.store": {"good": "fakestore:GoodStore", "half": "fakestore:HalfStore",
                             "broken": "brokenmod:Store"},
        "pilothouse.plugins": {"fakehooks": "fakehooks"},
        "pilothouse.scheduler": {"Spread": "fakesched:Spread", "Nothing": "fakesched:Nothing"},
    }, {"fakestore.py": STORE_SRC, "fakehooks.py": HOOKS_SRC, "fakesched.py": SCHED_SRC,
        "brokenmod.py": "raise ImportError('needs libfoo >= 2')\n"})
    import fakestore
    fakestore.CALLS.clear()
    return fakestore


def _config(doc):
    return parse_config({"base": "none", **doc}, "<test>")


def test_discover_reports_distribution_version_and_errors(fakes):
    found = {(p.slot, p.name): p for p in discover()}
    good = found[("store", "good")]
    assert (good.distribution, good.version, good.error) == ("pilothouse-fake", "1.2.3", None)
    assert "ImportError: needs libfoo >= 2" in found[("store", "broken")].error
    assert ("authz", "always-allow") in found  # the core's built-in registers the same way


def test_implemented_names_interfaces_extension_points_and_hooks(fakes):
    assert implemented("store", fakes.GoodStore) == ["Store", "hook:pilothouse_configure"]
    import fakesched
    assert implemented("scheduler", fakesched.Spread) == ["Filter", "Score"]


def test_configured_driver_is_constructed_with_checked_options(fakes):
    loaded = load_plugins(_config({"store": {"plugin": "good", "options": {"path": "/x"}}}))
    store = loaded.driver("store")
    assert isinstance(store, fakes.GoodStore) and store.options.path == "/x"
    assert loaded.drivers["store"].installed.distribution == "pilothouse-fake"


def test_hooks_reach_drivers_and_broadcast_plugins(fakes):
    loaded = load_plugins(_config({"store": {"plugin": "good", "options": {"path": "/x"}}}))
    loaded.pm.hook.pilothouse_configure(config=loaded.config)
    assert sorted(c[0] for c in fakes.CALLS) == ["hooks", "store"]
    assert loaded.pm.get_plugin("store:good") is loaded.driver("store")
    assert loaded.pm.get_plugin("plugins:fakehooks") is not None


def test_disabled_broadcast_plugin_is_not_loaded(fakes):
    loaded = load_plugins(_config({"plugins": {"disabled": ["fakehooks"]}}))
    loaded.pm.hook.pilothouse_configure(config=loaded.config)
    assert fakes.CALLS == []
    with pytest.raises(ConfigError, match="'nosuch' is not an installed broadcast plugin"):
        load_plugins(_config({"plugins": {"disabled": ["nosuch"]}}))


def test_unknown_name_lists_installed_plugins(fakes):
    with pytest.raises(ConfigError) as info:
        load_plugins(_config({"store": {"plugin": "stcd"}}))
    msg = str(info.value)
    assert "store plugin 'stcd' is not installed (entry-point group pilothouse.store)" in msg
    installed = msg.split("installed: ", 1)[1].split(", ")
    assert {"broken", "good", "half"} <= set(installed) and installed == sorted(installed)


def test_import_failure_names_plugin_and_exception(fakes):
    with pytest.raises(ConfigError,
                       match="store plugin 'broken' failed to import: ImportError: needs libfoo"):
        load_plugins(_config({"store": {"plugin": "broken"}}))


def test_interface_is_checked_at_load_time(fakes):
    with pytest.raises(ConfigError, match=r"'half' \(fakestore:HalfStore\) does not implement "
                                          r"Store: missing close, compact"):
        load_plugins(_config({"store": {"plugin": "half"}}))
    with pytest.raises(ConfigError, match="implements no scheduler extension point"):
        load_plugins(_config({"scheduler": {"profiles": [
            {"schedulerName": "s", "plugins": [{"name": "Nothing"}]}]}}))


def test_bad_options_name_plugin_and_option_and_all_errors_are_collected(fakes):
    with pytest.raises(ConfigError) as info:
        load_plugins(_config({
            "store": {"plugin": "good", "options": {"path": 1, "snyc": True}},
            "admission": {"plugins": [{"name": "missing-admission"}]},
            "controllers": {"enabled": ["nope"]}}))
    errors = info.value.errors
    assert "store: store plugin 'good': option 'path' must be string, got 1" in errors
    assert any("unknown option 'snyc'; known options: path, sync" in e for e in errors)
    assert any("admission plugin 'missing-admission' is not installed" in e for e in errors)
    assert any("controllers plugin 'nope' is not installed" in e for e in errors)


def test_broken_broadcast_plugin_fails_closed(fake_dist, fakes):
    fake_dist("pilothouse-badhooks", {"pilothouse.plugins": {"badhooks": "badhooks"}},
              {"badhooks.py": "import nonexistent_dependency\n"})
    with pytest.raises(ConfigError, match="broadcast plugin 'badhooks'.*failed to import"):
        load_plugins(_config({}))


def test_misspelled_hook_is_an_error(fake_dist, fakes):
    fake_dist("pilothouse-typo", {"pilothouse.plugins": {"typo": "typohooks"}},
              {"typohooks.py": "from pilothouse.hooks import hookimpl\n"
                               "@hookimpl\ndef pilothouse_configur(config): pass\n"})
    with pytest.raises(ConfigError, match="pilothouse_configur"):
        load_plugins(_config({}))


def test_scheduler_profile_order_is_the_configured_order(fakes):
    loaded = load_plugins(_config({"scheduler": {"profiles": [{"schedulerName": "s", "plugins": [
        {"name": "Spread", "weight": 5}]}]}}))
    (only,) = loaded.profiles["s"]
    assert only.ref.weight == 5 and type(only.instance).__name__ == "Spread"


def test_empty_driver_slot_is_a_clear_error_for_components():
    loaded = load_plugins(_config({}))
    with pytest.raises(ConfigError, match=r"runtime: no plugin configured; set 'runtime: "
                                          r"\{plugin: NAME\}'"):
        loaded.driver("runtime")


def test_hookimpl_marker_is_public():
    assert callable(hookimpl)
