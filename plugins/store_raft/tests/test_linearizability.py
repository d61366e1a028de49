"""Unit tests of the register linearizability checker used by the fault test."""

from linearizability import cas, check, read, write


def test_empty_and_sequential_histories():
    assert check([])
    assert check([write(0, 1, "a"), read(2, 3, "a"), cas(4, 5, "a", "b", True),
                  read(6, 7, "b"), cas(8, 9, "a", "c", False), read(10, 11, "b")])
    assert check([read(0, 1, None)])  # initial value


def test_stale_read_after_completed_write_is_not_linearizable():
    assert not check([write(0, 1, "a"), read(2, 3, None)])
    assert not check([write(0, 1, "a"), write(2, 3, "b"), read(4, 5, "a")])


def test_concurrent_operations_may_take_effect_in_either_order():
    # the write overlaps both reads: the first read may see the old, the second the new
    assert check([write(0, 10, "a"), read(1, 2, None), read(3, 4, "a")])
    # but once a read saw the new value, a later read cannot see the old one
    assert not check([write(0, 10, "a"), read(1, 2, "a"), read(3, 4, None)])


def test_cas_results_must_match_the_state():
    assert not check([write(0, 1, "a"), cas(2, 3, "a", "b", False)])
    assert not check([write(0, 1, "a"), cas(2, 3, "x", "b", True)])
    # two overlapping cas on the same expected value: only one may win
    assert check([write(0, 1, "a"), cas(2, 5, "a", "b", True), cas(2, 5, "a", "c", False)])
    assert not check([write(0, 1, "a"), cas(2, 5, "a", "b", True), cas(2, 5, "a", "c", True)])


def test_unknown_outcomes_may_or_may_not_have_happened():
    # a timed-out write later observed: it happened
    assert check([write(0, None, "a"), read(5, 6, "a")])
    # a timed-out write never observed: it did not happen (or not yet)
    assert check([write(0, None, "a"), read(5, 6, None)])
    # observed, then not observed: the value cannot disappear without another write
    assert not check([write(0, None, "a"), read(5, 6, "a"), read(7, 8, None)])
    # it cannot take effect before it was invoked
    assert not check([read(0, 1, "a"), write(2, None, "a")])
    # an unknown cas that succeeded explains a later read
    assert check([write(0, 1, "a"), cas(2, None, "a", "b", None), read(5, 6, "b")])
    assert not check([write(0, 1, "a"), cas(2, None, "x", "b", None), read(5, 6, "b")])


def test_classic_non_linearizable_register_history():
    # Two writers and two readers; reader 1 sees b then a while reader 2 sees a then b
    # after both writes completed: no single order explains both.
    history = [write(0, 2, "a"), write(1, 3, "b"),
               read(4, 5, "b"), read(6, 7, "a")]
    assert not check(history)
    history = [write(0, 5, "a"), write(0, 5, "b"),
               read(1, 2, "b"), read(3, 4, "a"), read(3, 4, "a")]
    assert check(history)  # a written after b, all within the writes' intervals


def test_larger_history_is_fast():
    ops, t = [], 0.0
    value = None
    for i in range(400):  # 4 overlapping clients, always consistent
        ops.append(write(t, t + 3.5, i))
        ops.append(read(t + 4, t + 4.5, i))
        t += 5
    assert check(ops)
    ops.append(read(t + 1, t + 2, 3))
    assert not check(ops)
