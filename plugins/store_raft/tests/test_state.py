"""The replicated state machine on its own: results, de-duplication of resubmitted
batches, compaction and snapshots."""

from __future__ import annotations

from pilothouse_store_raft import _state as S


def test_resubmitted_batch_is_applied_once():
    st = S.KVState()
    ops = ((S.OP_CREATE, "/a", b"1"), (S.OP_UPDATE, "/a", b"2", 1), (S.OP_BARRIER,))
    first = st.apply_batch(42, ops)
    assert first == [(S.OK, 1, 1), (S.OK, 1, 2), None]
    again = st.apply_batch(42, ops)  # e.g. resubmitted after a leader change
    assert again == first and st.rev == 2
    other = st.apply_batch(43, ((S.OP_CREATE, "/a", b"x"),))
    assert other[0][0] == S.ERR_EXISTS and other[0][1][3] == 2


def test_dedupe_memory_is_bounded_and_deterministic():
    a, b = S.KVState(), S.KVState()
    for st in (a, b):
        for i in range(S.DEDUPE_BATCHES + 10):
            st.apply_batch(i, ((S.OP_UPDATE, "/missing", b"", 0),))
    assert len(a.dedupe) == S.DEDUPE_BATCHES
    assert list(a.dedupe) == list(b.dedupe)
    assert 0 not in a.dedupe and S.DEDUPE_BATCHES + 9 in a.dedupe
    big = tuple((S.OP_UPDATE, "/missing", b"", 0) for _ in range(1000))
    for i in range(200):
        a.apply_batch(10**6 + i, big)
    assert a.dedupe_results <= S.DEDUPE_RESULTS
    assert a.dedupe_results == sum(len(r) for r in a.dedupe.values())


def test_compaction_keeps_what_is_visible_at_the_compacted_revision():
    st = S.KVState()
    st.apply_batch(1, ((S.OP_CREATE, "/a", b"1"),    # rev 1
                       (S.OP_CREATE, "/b", b"1"),    # rev 2
                       (S.OP_UPDATE, "/a", b"2", 0),  # rev 3
                       (S.OP_DELETE, "/b", 0),       # rev 4
                       (S.OP_CREATE, "/c", b"1"),    # rev 5
                       (S.OP_UPDATE, "/a", b"3", 0)))  # rev 6
    assert st.apply_batch(2, ((S.OP_COMPACT, 5),)) == [(S.OK, 5)]
    assert st.get("/a", 5)[1] == b"2" and st.get("/a", 6)[1] == b"3"
    assert "/b" not in st.versions and st.keys == ["/a", "/c"]
    assert [e[0] for e in st.events_after(5)] == [6]
    assert st.apply_batch(3, ((S.OP_COMPACT, 9),)) == [(S.ERR_BAD_COMPACT, 6)]
    items, more, count = st.list("/", 5, 0, None)
    assert [kv[1] for kv in items] == [b"2", b"1"] and count == 2


def test_snapshot_round_trip():
    st = S.KVState()
    st.apply_batch(7, ((S.OP_CREATE, "/x", b"1"), (S.OP_DELETE, "/x", 0),
                       (S.OP_CREATE, "/y", b"\x00\xff")))
    copy = S.KVState()
    copy.load(st.dump())
    assert (copy.rev, copy.keys, copy.dead) == (3, ["/x", "/y"], {"/x"})
    assert copy.events == st.events and copy.apply_batch(7, ()) == st.dedupe[7]
    assert copy.list("", 0, 0, None) == st.list("", 0, 0, None)
