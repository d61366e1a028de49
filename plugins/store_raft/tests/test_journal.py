"""The durable journal: group commit, recovery of a torn tail, truncation, metadata."""

from __future__ import annotations

import os

from pilothouse_store_raft._journal import MAGIC, DurableJournal


def _journal(tmp_path) -> DurableJournal:
    return DurableJournal(str(tmp_path / "j"), str(tmp_path / "meta"))


def test_entries_survive_reopen_only_after_sync(tmp_path):
    j = _journal(tmp_path)
    j.add(b"\x01", 1, 0)
    j.add(b"a", 2, 1)
    j.add(b"b", 3, 1)
    assert j.syncs == 0
    j.sync()
    assert j.syncs == 1  # one fdatasync for all three entries
    j.sync()
    assert j.syncs == 1  # nothing new: no fdatasync
    j.add(b"unsynced", 4, 1)
    # simulate kill -9: drop the object without syncing or closing
    os.close(j._fd)
    j = _journal(tmp_path)
    assert [e for e in j] == [(b"\x01", 1, 0), (b"a", 2, 1), (b"b", 3, 1)]


def test_torn_tail_is_cut(tmp_path):
    j = _journal(tmp_path)
    for i in range(1, 6):
        j.add(b"x" * i, i, 1)
    j._destroy()
    path = tmp_path / "j"
    data = path.read_bytes()
    path.write_bytes(data[:-3])  # the last record lost its end
    j = _journal(tmp_path)
    assert [e[1] for e in j] == [1, 2, 3, 4]
    assert path.stat().st_size < len(data) - 3  # the torn record was cut off
    j.add(b"y", 5, 2)
    j._destroy()
    assert [e[1:] for e in _journal(tmp_path)] == [(1, 1), (2, 1), (3, 1), (4, 1), (5, 2)]


def test_corrupt_record_ends_the_log(tmp_path):
    j = _journal(tmp_path)
    for i in range(1, 4):
        j.add(b"abc", i, 1)
    j._destroy()
    path = tmp_path / "j"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # flip a bit of the last command
    path.write_bytes(bytes(data))
    assert [e[1] for e in _journal(tmp_path)] == [1, 2]


def test_delete_from_and_to(tmp_path):
    j = _journal(tmp_path)
    for i in range(1, 11):
        j.add(str(i).encode(), i, 1)
    j.deleteEntriesFrom(7)  # keep entries 1..7 (positions 0..6)
    j.add(b"8'", 8, 2)
    j.deleteEntriesTo(3)  # drop positions 0..2
    assert [e[1] for e in j] == [4, 5, 6, 7, 8]
    j.add(b"9'", 9, 2)
    j._destroy()
    j = _journal(tmp_path)
    assert [(e[0], e[1]) for e in j] == [(b"4", 4), (b"5", 5), (b"6", 6), (b"7", 7),
                                        (b"8'", 8), (b"9'", 9)]


def test_clear_and_drop_before(tmp_path):
    j = _journal(tmp_path)
    for i in range(1, 6):
        j.add(b"c", i, 3)
    assert not j.drop_before(3, 2)  # wrong term: untouched
    assert len(j) == 5
    assert j.drop_before(3, 3)
    assert [e[1] for e in j] == [3, 4, 5]
    j.clear()
    j.add(b"s1", 10, 4)
    j.add(b"s2", 11, 4)
    j._destroy()
    assert [e[1] for e in _journal(tmp_path)] == [10, 11]
    assert (tmp_path / "j").read_bytes().startswith(MAGIC)


def test_term_and_vote_are_durable_and_commit_index_saved(tmp_path):
    j = _journal(tmp_path)
    assert (j.getCurrentTerm(), j.getVotedForNodeId(), j.getRaftCommitIndex()) == (0, None, 1)
    j.setCurrentTerm(7, "127.0.0.1:1234")
    os.close(j._fd)  # "kill -9" right after the vote was recorded
    j = _journal(tmp_path)
    assert (j.getCurrentTerm(), j.getVotedForNodeId()) == (7, "127.0.0.1:1234")
    j.add(b"a", 1, 7)
    j.setRaftCommitIndex(1)  # syncs the entry first
    assert j.syncs == 1
    j.onOneSecondTimer()
    os.close(j._fd)
    j = _journal(tmp_path)
    assert j.getRaftCommitIndex() == 1 and len(j) == 1


def test_a_journal_file_cut_inside_its_header_starts_empty(tmp_path):
    (tmp_path / "j").write_bytes(MAGIC[:3])
    j = _journal(tmp_path)
    assert len(j) == 0
    j.add(b"a", 1, 1)
    j._destroy()
    assert [e[1] for e in _journal(tmp_path)] == [1]
