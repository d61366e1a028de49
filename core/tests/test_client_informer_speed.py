"""Informer._set, the path of every watch event: cache, indexes, transform and handlers
behave as before its inlining (no API server needed)."""

import logging

from pilothouse.client.informer import Informer, drop_managed_fields


def make(**kw):
    return Informer(None, **kw)


def obj(name, ns=None, rv="1", labels=None, managed=False):
    meta = {"name": name, "resourceVersion": rv, "labels": labels or {}}
    if ns:
        meta["namespace"] = ns
    if managed:
        meta["managedFields"] = [{"manager": "x"}]
    return {"metadata": meta}


def test_set_caches_by_key_and_calls_add_then_update_handlers_in_order():
    inf = make()
    calls = []
    inf.add_handlers(lambda o: calls.append(("add1", o["metadata"]["name"])),
                     lambda a, b: calls.append(("upd1", a["metadata"]["resourceVersion"],
                                                b["metadata"]["resourceVersion"])))
    inf.add_handlers(None, lambda a, b: calls.append(("upd2", b["metadata"]["name"])))
    inf.add_handlers(lambda o: calls.append(("add3", o["metadata"]["name"])))
    inf._set(obj("a", "ns1"))
    inf._set(obj("a", "ns1", rv="2"))
    inf._set(obj("node-1"))
    assert sorted(inf.cache) == ["node-1", "ns1/a"]
    assert inf.get("ns1/a")["metadata"]["resourceVersion"] == "2"
    assert calls == [("add1", "a"), ("add3", "a"), ("upd1", "1", "2"), ("upd2", "a"),
                     ("add1", "node-1"), ("add3", "node-1")]


def test_a_failing_handler_is_logged_and_the_others_still_run(caplog):
    inf = make()
    seen = []

    def boom(*args):
        raise RuntimeError("boom")
    inf.add_handlers(boom, boom)
    inf.add_handlers(lambda o: seen.append("add"), lambda a, b: seen.append("update"))
    with caplog.at_level(logging.ERROR):
        inf._set(obj("a", "ns"))
        inf._set(obj("a", "ns", rv="2"))
    assert seen == ["add", "update"]
    assert caplog.text.count("informer handler failed") == 2


def test_indexes_follow_sets_and_removes():
    inf = make()
    inf.add_index("app", lambda o: [o["metadata"]["labels"].get("app", "")])
    inf._set(obj("a", "ns", labels={"app": "web"}))
    inf._set(obj("b", "ns", labels={"app": "web"}))
    inf._set(obj("a", "ns", rv="2", labels={"app": "db"}))
    assert [o["metadata"]["name"] for o in inf.by_index("app", "web")] == ["b"]
    assert [o["metadata"]["name"] for o in inf.by_index("app", "db")] == ["a"]
    inf._remove(obj("b", "ns"))
    assert inf.by_index("app", "web") == []


def test_the_transform_applies_before_caching_and_handlers():
    inf = make(transform=drop_managed_fields)
    got = []
    inf.add_handlers(lambda o: got.append(o), lambda a, b: got.append(b))
    inf._set(obj("a", "ns", managed=True))
    inf._set(obj("a", "ns", rv="2", managed=True))
    assert all("managedFields" not in o["metadata"] for o in got)
    assert "managedFields" not in inf.get("ns/a")["metadata"]
    assert got[1] is inf.get("ns/a")
