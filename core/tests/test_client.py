"""pilothouse.client against a real API server: REST calls, informers (including the relist
after 410), the work queue's semantics, and leader election with competing candidates."""

import asyncio

import pytest

from pilothouse.client import Client, Informer, LeaderElector, WorkQueue
from pilothouse.client.informer import drop_managed_fields
from pilothouse.model import errors


def run(coro):
    return asyncio.run(coro)


def test_rest_calls_and_errors(apiserver):
    async def body():
        async with Client(apiserver.url) as c:
            cms = c.resource("v1", "ConfigMap")
            created = await cms.create({"metadata": {"name": "cl1"}, "data": {"a": "1"}},
                                       "default")
            assert created["metadata"]["uid"]
            with pytest.raises(errors.AlreadyExists):
                await cms.create({"metadata": {"name": "cl1"}}, "default")
            patched = await cms.patch("cl1", {"data": {"b": "2"}}, "default")
            assert patched["data"] == {"a": "1", "b": "2"}
            stale = dict(created)
            with pytest.raises(errors.Conflict):
                await cms.update(stale)
            listed = await cms.list("default", field_selector="metadata.name=cl1", limit=1)
            assert [o["metadata"]["name"] for o in listed["items"]] == ["cl1"]
            await cms.delete("cl1", "default")
            with pytest.raises(errors.NotFound):
                await cms.get("cl1", "default")
            with pytest.raises(errors.ServiceUnavailable):
                await Client("http://127.0.0.1:1").resource("v1", "Pod").get("x", "default")
    run(body())


def test_informer_follows_changes_and_indexes(apiserver):
    async def body():
        async with Client(apiserver.url) as c:
            cms = c.resource("v1", "ConfigMap")
            inf = Informer(cms, "default", label_selector="inf=yes")
            inf.add_index("colour", lambda o: [o["metadata"]["labels"].get("colour", "")])
            seen = []
            inf.add_handlers(lambda o: seen.append(("add", o["metadata"]["name"])),
                             lambda old, new: seen.append(("update", new["metadata"]["name"])),
                             lambda o: seen.append(("delete", o["metadata"]["name"])))
            await cms.create({"metadata": {"name": "i0", "labels": {"inf": "yes",
                                                                    "colour": "red"}}}, "default")
            inf.start()
            await asyncio.wait_for(inf.synced.wait(), 10)
            await cms.create({"metadata": {"name": "i1", "labels": {"inf": "yes",
                                                                    "colour": "red"}}}, "default")
            await cms.create({"metadata": {"name": "other"}}, "default")
            await cms.patch("i1", {"data": {"x": "y"}}, "default")
            await cms.delete("i0", "default")
            for _ in range(100):
                if ("delete", "i0") in seen:
                    break
                await asyncio.sleep(0.05)
            await inf.stop()
            assert seen == [("add", "i0"), ("add", "i1"), ("update", "i1"), ("delete", "i0")]
            assert [o["metadata"]["name"] for o in inf.by_index("colour", "red")] == ["i1"]
    run(body())


def test_informer_transform_applies_to_listed_and_watched_objects(apiserver):
    async def body():
        async with Client(apiserver.url) as c:
            cms = c.resource("v1", "ConfigMap")
            listed = await cms.create({"metadata": {"name": "t0", "labels": {"tr": "1"}}},
                                      "default")
            assert listed["metadata"].get("managedFields")  # the server keeps them
            inf = Informer(cms, "default", label_selector="tr=1",
                           transform=drop_managed_fields)
            seen = []
            inf.add_handlers(lambda o: seen.append(o), lambda old, new: seen.append(new),
                             lambda o: seen.append(o))
            inf.start()
            await asyncio.wait_for(inf.synced.wait(), 10)
            await cms.create({"metadata": {"name": "t1", "labels": {"tr": "1"}}}, "default")
            await cms.patch("t1", {"data": {"x": "y"}}, "default")
            await cms.delete("t0", "default")
            for _ in range(100):
                if len(seen) >= 4:
                    break
                await asyncio.sleep(0.05)
            await inf.stop()
            assert [o["metadata"]["name"] for o in seen] == ["t0", "t1", "t1", "t0"]
            assert all("managedFields" not in o["metadata"] and o["metadata"]["resourceVersion"]
                       for o in [*seen, *inf.list()])
            assert inf.get("default/t1")["data"] == {"x": "y"}
    run(body())


def test_informer_relists_after_410(start_apiserver):
    small = start_apiserver({"store": {"plugin": "memory"},
                             "components": {"apiserver": {"watchCacheSize": 3}}})

    async def body():
        async with Client(small.url) as c:
            cms = c.resource("v1", "ConfigMap")
            inf = Informer(cms, "default")
            added = []
            inf.add_handlers(on_add=lambda o: added.append(o["metadata"]["name"]))
            inf.start()
            await asyncio.wait_for(inf.synced.wait(), 10)
            await inf.stop()
            stale_rv = inf.resource_version
            for i in range(6):  # more changes than the server's window keeps
                await cms.create({"metadata": {"name": f"r{i}"}}, "default")
            inf.start()  # resumes from stale_rv: 410 Expired, then a relist
            for _ in range(100):
                if len(added) >= 6:
                    break
                await asyncio.sleep(0.05)
            await inf.stop()
            assert sorted(added) == [f"r{i}" for i in range(6)]
            assert int(inf.resource_version) > int(stale_rv)
    run(body())


def test_workqueue_dedups_and_serialises_keys():
    async def body():
        q = WorkQueue(base_delay=0.01)
        q.add("a")
        q.add("a")
        q.add("b")
        assert len(q) == 2
        key = await q.get()
        assert key == "a"
        q.add("a")  # while processing: queued again only after done()
        assert len(q) == 1
        second = await q.get()
        assert second == "b"
        q.done("a")
        assert await q.get() == "a"
        q.done("a")
        q.done("b")
        d1 = q.add_rate_limited("c")
        d2 = q.add_rate_limited("c")
        assert d2 == 2 * d1 and q.retries("c") == 2
        q.forget("c")
        assert q.retries("c") == 0
        assert await asyncio.wait_for(q.get(), 2) == "c"
        await q.shutdown()
        assert await q.get() is None
    run(body())


def test_leader_election_one_leader_and_takeover(apiserver):
    async def body():
        async with Client(apiserver.url) as c:
            leading: list[str] = []

            def candidate(ident):
                elector = LeaderElector(c, "test-election", ident, lease_duration=2,
                                        renew_deadline=1.5, retry_period=0.2)

                async def lead():
                    leading.append(ident)
                    await asyncio.Event().wait()
                return elector, lead
            e1, l1 = candidate("one")
            e2, l2 = candidate("two")
            stop1, stop2 = asyncio.Event(), asyncio.Event()
            t1 = asyncio.create_task(e1.run(l1, stop1))
            await asyncio.sleep(0.5)
            t2 = asyncio.create_task(e2.run(l2, stop2))
            await asyncio.sleep(1.0)
            assert leading == ["one"] and e1.is_leader and not e2.is_leader
            stop1.set()  # the leader steps down and releases the lease
            await asyncio.wait_for(t1, 5)
            for _ in range(50):
                if e2.is_leader:
                    break
                await asyncio.sleep(0.1)
            assert leading == ["one", "two"]
            stop2.set()
            await asyncio.wait_for(t2, 5)
    run(body())
