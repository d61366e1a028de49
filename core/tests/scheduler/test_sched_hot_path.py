"""Behaviour pinned around the scheduler's per-pod CPU savings: what a cycle decides, raises
and writes must not change when work is skipped."""

import asyncio
import re
import time

import pytest

from pilothouse.interfaces.scheduler import Status
from pilothouse.scheduler import ProfilePlugin
from pilothouse.scheduler import _events
from pilothouse.scheduler.testing import CycleRunner, node, pod

_n = [0]


def mkpod():
    _n[0] += 1
    p = pod(f"hp{_n[0]}", cpu="100m")
    p["metadata"]["uid"] = f"hp-uid-{_n[0]}"
    p["spec"]["priority"] = 0
    return p


class Scored:
    """Filter (always passes) + Score with ``scores_normalized`` + Sign: the score of a node
    is ``table[node name]`` (default 50); every call is recorded."""

    scores_normalized = True

    def __init__(self, table=None):
        self.table, self.calls = dict(table or {}), []

    def filter(self, state, p, n):
        return Status()

    def score(self, state, p, n):
        self.calls.append(n.name)
        return self.table.get(n.name, 50)

    def normalize_scores(self, state, p, scores):
        return scores

    def sign(self, state, p):
        return "same"


def runner_with(plugin, reuse=True, count=3):
    r = CycleRunner([ProfilePlugin("S", plugin)], reuse=reuse)
    for i in range(count):
        r.add_node(node(f"n{i}", cpu="64"))
    return r


@pytest.mark.parametrize("reuse", [True, False])
def test_an_out_of_range_normalized_score_fails_every_cycle_that_reads_it(reuse):
    plugin = Scored({"n1": 150})
    r = runner_with(plugin, reuse)
    for _ in range(3):
        with pytest.raises(ValueError, match="plugin S scored node n1 150, outside"):
            r.schedule(mkpod(), assume=False)
    if reuse:  # never stored: asked again each cycle; the in-range ones were kept
        assert plugin.calls.count("n1") == 3
        assert plugin.calls.count("n0") == 1 and plugin.calls.count("n2") == 1


def test_stored_normalized_scores_are_reused_without_a_new_check_and_decide_alike():
    plugin = Scored({"n0": 10, "n1": 90, "n2": 40})
    r = runner_with(plugin)
    plain = runner_with(Scored({"n0": 10, "n1": 90, "n2": 40}), reuse=False)
    for _ in range(4):
        assert r.schedule(mkpod(), assume=False) == plain.schedule(mkpod(), assume=False) \
            == "n1"
    assert sorted(plugin.calls) == ["n0", "n1", "n2"]  # each node scored once


def test_non_int_normalized_scores_are_checked_and_recomputed_each_cycle():
    plugin = Scored({"n0": 10.5, "n1": 99.5, "n2": 40})
    r = runner_with(plugin)
    for _ in range(2):
        assert r.schedule(mkpod(), assume=False) == "n1"
    assert plugin.calls.count("n1") == 2 and plugin.calls.count("n2") == 1
    bad = Scored({"n1": None})
    r = runner_with(bad)
    for _ in range(2):
        with pytest.raises(TypeError):
            r.schedule(mkpod(), assume=False)


def test_an_async_score_plugin_on_the_table_path():
    class Async(Scored):
        async def score(self, state, p, n):
            self.calls.append(n.name)
            return self.table.get(n.name, 50)
    plugin = Async({"n2": 70})
    r = runner_with(plugin)
    assert [r.schedule(mkpod(), assume=False) for _ in range(3)] == ["n2"] * 3
    assert sorted(plugin.calls) == ["n0", "n1", "n2"]


def test_event_timestamps_are_the_current_utc_second():
    for _ in range(3):
        before = time.time()
        stamp = _events._now()
        after = time.time()
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", stamp)
        assert stamp in {time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(t)))
                         for t in (before, after)}


def test_event_names_are_the_object_name_and_16_random_hex_digits():
    class Events:
        def __init__(self):
            self.bodies = []

        def path(self, ns):
            return f"/api/v1/namespaces/{ns}/events"

    class Client:
        def __init__(self):
            self.events = Events()
            self.events.client = self

        def resource(self, api_version, kind):
            return self.events

        async def request(self, method, path, *, body=None, raw=False, **kw):
            self.events.bodies.append(body)
            return ""

    client = Client()
    rec = _events.EventRecorder(client, "default-scheduler", "me")

    async def main():
        for i in range(200):
            p = pod(f"web-{i}")
            p["metadata"]["uid"] = f"u{i}"
            await rec._write(p, "Normal", "Scheduled", "ok", "Binding", "default-scheduler")
    asyncio.run(main())
    names = [b["metadata"]["name"] for b in client.events.bodies]
    assert all(re.fullmatch(r"web-\d+\.[0-9a-f]{16}", n) for n in names)
    assert len({n.split(".")[1] for n in names}) == 200
    body = client.events.bodies[0]
    assert body["firstTimestamp"] == body["lastTimestamp"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", body["firstTimestamp"])


def test_extension_points_await_coroutines_and_check_what_plugins_return():
    """Plain functions, coroutine functions and plain functions returning an awaitable are
    all settled; None counts as success; anything else is an error naming the plugin."""
    from pilothouse.interfaces.scheduler import Code, CycleState
    from pilothouse.scheduler import Framework
    from pilothouse.scheduler._framework import SIGNATURE_KEY

    seen = []

    class Coro:
        async def pre_filter(self, state, p, nodes):
            seen.append("pre_filter")
            return Status()

        async def sign(self, state, p):
            return ("coro",)

        def filter(self, state, p, n):
            return Status()

        async def pre_score(self, state, p, nodes):
            seen.append("pre_score")
            return Status.skip()

        async def reserve(self, state, p, node_name):
            seen.append("reserve")
            return None

        def unreserve(self, state, p, node_name):
            pass

        async def permit(self, state, p, node_name):
            return Status(Code.WAIT), 2.5

        async def bind(self, state, p, node_name, client):
            return Status.skip()

    class Later:
        """Plain methods that hand back an awaitable."""

        def pre_filter(self, state, p, nodes):
            async def later():
                seen.append("later pre_filter")
            return later()

        def sign(self, state, p):
            async def later():
                return "later"
            return later()

        def filter(self, state, p, n):
            return Status()

        def bind(self, state, p, node_name, client):
            async def later():
                return Status()
            return later()

    class Wrong:
        def pre_score(self, state, p, nodes):
            return 7

        def reserve(self, state, p, node_name):
            return "yes"

        def unreserve(self, state, p, node_name):
            pass

    fw = Framework("p", [ProfilePlugin("C", Coro()), ProfilePlugin("L", Later()),
                         ProfilePlugin("W", Wrong())])

    async def main():
        state = CycleState()
        st = await fw.run_pre_filter(state, mkpod(), [])
        assert st.ok and seen == ["pre_filter", "later pre_filter"]
        assert state.get(SIGNATURE_KEY) is not None  # both signed (awaited fragments)
        assert ("C", ("coro",)) in next(reversed(fw._results)) and \
            ("L", "later") in next(reversed(fw._results))
        st, skip = await fw.run_pre_score(state, mkpod(), [])
        assert skip == {"C"} and st.code is Code.ERROR and st.plugin == "W"
        assert "plugin W returned int, not a Status" in st.message
        st = await fw.run_reserve(state, mkpod(), "n1")
        assert st.code is Code.ERROR and st.plugin == "W" and "returned str" in st.message
        st, waits = await fw.run_permit(state, mkpod(), "n1")
        assert st.code is Code.WAIT and waits == {"C": 2.5}
        st = await fw.run_bind(state, mkpod(), "n1", None)
        assert st.ok and st.plugin == "L"
    asyncio.run(main())


def test_any_raw_score_value_round_trips_through_the_table():
    """Raw scores are stored per node; a value equal to the table's own 'not computed'
    marker is just asked again, never mistaken: normalize sees the same raw scores with
    reuse as without."""
    from pilothouse.scheduler._framework import _UNSCORED

    class Raw(Scored):
        scores_normalized = False

        def __init__(self, table):
            super().__init__(table)
            self.seen = []

        def normalize_scores(self, state, p, scores):
            self.seen.append(dict(scores))
            lo = min(scores.values())
            return {n: 100 if s == lo else 0 for n, s in scores.items()}

    table = {"n0": _UNSCORED, "n1": -5, "n2": 10 ** 30}
    reused, plain = Raw(table), Raw(table)
    r, p = runner_with(reused), runner_with(plain, reuse=False)
    for _ in range(3):
        assert r.schedule(mkpod(), assume=False) == p.schedule(mkpod(), assume=False) == "n0"
    assert reused.seen == plain.seen == [table] * 3
    assert reused.calls.count("n0") == 3 and reused.calls.count("n1") == 1


@pytest.mark.parametrize("weight,table", [
    (1, {"n0": 50, "n1": 50, "n2": 40, "n3": 50}),           # ints within a byte: ties
    (1, {"n0": 50, "n1": 51, "n2": 40, "n3": 50}),           # a single best
    (3, {"n0": 100, "n1": 100, "n2": 90, "n3": 100}),        # totals above 255
    (1, {"n0": 50.0, "n1": 50, "n2": 40, "n3": 50.0}),       # float scores (not stored)
    (1, {"n0": 0, "n1": 0, "n2": 0, "n3": 0}),               # all tied at 0
])
def test_table_path_host_selection_draws_like_the_plain_walk(weight, table):
    """select() on the table path picks by position; with the same random state it makes the
    same choice as select_host over the totals dict, every time."""
    import random

    class Weighted(Scored):
        pass
    reused = CycleRunner([ProfilePlugin("S", Weighted(table), weight=weight)])
    plain = CycleRunner([ProfilePlugin("S", Weighted(table), weight=weight)], reuse=False)
    for r in (reused, plain):
        for i in range(4):
            r.add_node(node(f"n{i}", cpu="64"))
    random.seed(11)
    a = [reused.schedule(mkpod(), assume=False) for _ in range(40)]
    random.seed(11)
    b = [plain.schedule(mkpod(), assume=False) for _ in range(40)]
    assert a == b
    best = max(v * weight for v in table.values())
    assert set(a) == {n for n, v in table.items() if v * weight == best}


def test_prefilter_skips_are_per_pod_and_follow_a_replaced_filter_list():
    """The shared per-skip-set filter lists: a pod whose PreFilter skips a plugin does not
    run its Filter, the next pod that does not skip it does; a Filter list replaced on the
    framework is used from the next cycle on."""
    from pilothouse.interfaces.scheduler import CycleState
    from pilothouse.scheduler import Framework
    from pilothouse.scheduler._framework import SKIP_FILTER_KEY

    ran = []

    class Maybe:
        def pre_filter(self, state, p, nodes):
            return Status.skip() if p["metadata"]["labels"].get("skip") else Status()

        def filter(self, state, p, n):
            ran.append(("Maybe", p["metadata"]["name"]))
            return Status()

    class Always:
        def filter(self, state, p, n):
            ran.append(("Always", p["metadata"]["name"]))
            return Status()
    fw = Framework("p", [ProfilePlugin("M", Maybe()), ProfilePlugin("A", Always())],
                     signature_cache_size=0)
    n = node("n1")
    from pilothouse.interfaces.scheduler import NodeInfo
    info = NodeInfo(n)

    def cycle(name, skip):
        p = pod(name, labels={"skip": "1"} if skip else {})
        state = CycleState()
        asyncio.run(fw.run_pre_filter(state, p, [info]))
        assert ("M" in state.get(SKIP_FILTER_KEY)) is skip
        assert fw.run_filters(state, p, info).ok
    for name, skip in (("s1", True), ("r1", False), ("s2", True), ("r2", False)):
        cycle(name, skip)
    assert ran == [("Always", "s1"), ("Maybe", "r1"), ("Always", "r1"), ("Always", "s2"),
                   ("Maybe", "r2"), ("Always", "r2")]
    ran.clear()
    fw.filter = [fw.filter[1]]  # only Always from now on
    cycle("r3", False)
    cycle("s3", True)
    assert ran == [("Always", "r3"), ("Always", "s3")]


def test_event_name_suffixes_differ_in_a_forked_child():
    import os
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next suffix
        try:
            os.write(write, b"%016x" % _events._names.getrandbits(64))
        finally:
            os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert len(child) == 16 and child != f"{_events._names.getrandbits(64):016x}"
