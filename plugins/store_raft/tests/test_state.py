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


def _random_history(seed: int, n: int = 3000) -> S.KVState:
    """Creates, updates, deletes and re-creates of a few keys, with compactions between."""
    import random
    rnd = random.Random(seed)
    st = S.KVState()
    for b in range(n // 10):
        ops = []
        for _ in range(10):
            key = f"/k/{rnd.randrange(40):02d}"
            kind = rnd.choice("ccuud")
            if kind == "c":
                ops.append((S.OP_CREATE, key, rnd.randbytes(rnd.randrange(1, 300))))
            elif kind == "u":
                ops.append((S.OP_UPDATE, key, rnd.randbytes(rnd.randrange(1, 300)), 0))
            else:
                ops.append((S.OP_DELETE, key, 0))
        if b % 37 == 36:
            ops.append((S.OP_COMPACT, max(0, st.rev - rnd.randrange(50))))
        st.apply_batch(b, tuple(ops))
    return st


def _same_state(a: S.KVState, b: S.KVState) -> None:
    assert (a.rev, a.compact_rev, a.applied_batches) == (b.rev, b.compact_rev,
                                                         b.applied_batches)
    assert a.versions == b.versions and list(a.versions) == list(b.versions)
    assert a.events == b.events
    assert (a.keys, a.dead, a.multi) == (b.keys, b.dead, b.multi)
    assert list(a.dedupe.items()) == list(b.dedupe.items())
    assert a.dedupe_results == b.dedupe_results


def test_snapshot_in_small_pieces_round_trips_history_and_dedupe(monkeypatch):
    # Small pieces: many of each kind; the history events are rebuilt from the versions.
    monkeypatch.setattr(S, "SNAPSHOT_PIECE_BYTES", 2000)
    monkeypatch.setattr(S, "SNAPSHOT_PIECE_KEYS", 7)
    monkeypatch.setattr(S, "SNAPSHOT_PIECE_RESULTS", 50)
    for seed in range(5):
        st = _random_history(seed)
        assert st.compact_rev > 0 and st.dead
        pieces = list(st.dump_pieces())
        assert len(pieces) > 20
        copy = S.KVState()
        copy.load(b"".join(pieces))
        _same_state(copy, st)
        # and it goes on identically
        ops = ((S.OP_CREATE, "/k/new", b"n"), (S.OP_DELETE, "/k/new", 0),
               (S.OP_COMPACT, st.rev - 3))
        assert copy.apply_batch(10**9, ops) == st.apply_batch(10**9, ops)
        _same_state(copy, st)


def test_snapshot_pieces_are_bounded():
    st = S.KVState()
    st.apply_batch(1, tuple((S.OP_CREATE, f"/big/{i:04d}", bytes(3000)) for i in range(1000)))
    st.apply_batch(2, tuple((S.OP_UPDATE, f"/big/{i:04d}", bytes(3000), 0)
                            for i in range(1000)))
    pieces = list(st.dump_pieces())
    assert max(len(p) for p in pieces) < S.SNAPSHOT_PIECE_BYTES + 3 * 3000 + 4096
    assert sum(len(p) for p in pieces) > 2000 * 3000


def test_snapshot_format_1_still_loads():
    import pickle
    st = _random_history(7, 500)
    old = pickle.dumps((1, st.rev, st.compact_rev, st.versions, st.events,
                        list(st.dedupe.items()), st.applied_batches), protocol=5)
    copy = S.KVState()
    copy.load(old)
    _same_state(copy, st)


def test_snapshot_with_a_history_gap_is_refused():
    import pickle
    import pytest
    st = _random_history(3, 300)
    pieces = list(st.dump_pieces())
    fmt, rev, compact_rev, applied = pickle.loads(pieces[0])
    pieces[0] = pickle.dumps((fmt, rev + 1, compact_rev, applied))  # one event missing
    with pytest.raises(ValueError, match="events in history"):
        S.KVState().load(b"".join(pieces))
    with pytest.raises(ValueError, match="unsupported snapshot format"):
        S.KVState().load(pickle.dumps((3, 0, 0, 0)))
