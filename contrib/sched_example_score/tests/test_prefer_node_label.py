"""The example Score plugin: unit behaviour, and end to end that enabling it in a profile
with a weight changes where pods go."""

import random

import pytest

from pilothouse.config import ConfigError, default_profile
from pilothouse.interfaces.scheduler import CycleState, NodeInfo, Sign
from pilothouse.plugins import discover
from pilothouse.scheduler import ProfilePlugin
from pilothouse.scheduler.testing import CycleRunner, SchedulerThread, node, pod
from pilothouse_sched_example_score import PreferNodeLabel


def info(name, **labels):
    return NodeInfo(node(name, labels=labels))


def test_scores_nodes_with_the_label():
    plugin = PreferNodeLabel()
    nodes = [info("fast", **{"example.com/tier": "fast"}),
             info("slow", **{"example.com/tier": "slow"}), info("plain")]
    raw = {n.name: plugin.score(CycleState(), {}, n) for n in nodes}
    assert plugin.normalize_scores(CycleState(), {}, raw) == {"fast": 100, "slow": 0,
                                                              "plain": 0}
    any_tier = PreferNodeLabel(PreferNodeLabel.Options(label="example.com/tier"))
    assert [any_tier.score(CycleState(), {}, n) for n in nodes] == [100, 100, 0]


def test_options_are_checked_by_the_loader(pilothouse_plugins):
    doc = {"scheduler": {"profiles": [{"schedulerName": "s", "plugins": [
        {"name": "PreferNodeLabel", "weight": 5, "options": {"label": "=x"}}]}]}}
    with pytest.raises(ConfigError, match="label must be"):
        pilothouse_plugins(doc, base="none")
    doc["scheduler"]["profiles"][0]["plugins"][0]["options"] = {"label": "disk=ssd"}
    (lp,) = pilothouse_plugins(doc, base="none").profiles["s"]
    assert (lp.instance.key, lp.instance.value, lp.ref.weight) == ("disk", "ssd", 5)


def _default_plugins_installed():
    names = {p.name for p in discover(["scheduler"], load=False)}
    wanted = {e["name"] for e in default_profile()["scheduler"]["profiles"][0]["plugins"]}
    return wanted <= names


def _place(start_apiserver, extra_plugins):
    profile = default_profile()["scheduler"]["profiles"][0]
    profile["plugins"] = profile["plugins"] + extra_plugins
    api = start_apiserver({"store": {"plugin": "memory"}})
    with SchedulerThread(api.url, config_doc={"scheduler": {"profiles": [profile]}}) as s:
        s.create(node("slow", cpu="8", memory="16Gi", labels={"example.com/tier": "slow"}))
        s.create(node("fast", cpu="8", memory="16Gi", labels={"example.com/tier": "fast"}))
        # the fast node is already half busy, so LeastAllocated alone prefers the slow one
        s.create(pod("busy", cpu="4", memory="8Gi", node_selector={"example.com/tier": "fast"}))
        s.wait_bound("busy")
        placed = {}
        for i in range(3):
            s.create(pod(f"app-{i}", cpu="500m", memory="512Mi"))
            placed[f"app-{i}"] = s.wait_bound(f"app-{i}")
        return placed


@pytest.mark.skipif(not _default_plugins_installed(),
                    reason="needs the default profile's plugins (pip install -e plugins/sched_default)")
def test_enabling_the_plugin_with_a_weight_changes_placements(start_apiserver):
    without = _place(start_apiserver, [])
    assert set(without.values()) == {"slow"}
    with_plugin = _place(start_apiserver, [{"name": "PreferNodeLabel", "weight": 5,
                                            "options": {"label": "example.com/tier=fast"}}])
    assert set(with_plugin.values()) == {"fast"}


def test_signs_and_places_the_same_with_and_without_reuse():
    """The score reads only the node: one fragment for every pod, and reusing scores across
    pods changes no placement (CycleRunner: the host's cycle in-process)."""
    plugin = PreferNodeLabel()
    assert isinstance(plugin, Sign)
    assert plugin.sign(CycleState(), pod("a", cpu="1")) == plugin.sign(CycleState(), pod("b"))
    placed = {}
    for reuse in (True, False):
        random.seed(5)  # ties are broken at random: the same draws in both runs
        run = CycleRunner([ProfilePlugin("PreferNodeLabel", PreferNodeLabel())], reuse=reuse)
        for i in range(6):
            run.add_node(node(f"n{i}", labels={"example.com/tier": "fast" if i % 2 else "slow"}))
        placed[reuse] = [run.schedule(dict(pod(f"p{i}"), metadata={"name": f"p{i}",
                                                                    "uid": f"u{i}"}))
                         for i in range(10)]
        assert (run.framework.signers is not None) is reuse
    assert placed[True] == placed[False]
    assert {n for n in placed[True]} <= {"n1", "n3", "n5"}
