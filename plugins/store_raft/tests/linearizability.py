"""A linearizability checker for the history of one register (Wing & Gong's search with
Lowe's memoization, as in Knossos / Porcupine).

A history is a list of :class:`Op`: each has an invoke time and either a completion time
with its observed result, or ``complete=None`` when the outcome is unknown (a timeout, a
crash): such an operation may have taken effect at any point after its invocation, or
never. :func:`check` answers whether some total order of the operations exists that

* respects real time: if ``a.complete < b.invoke`` then ``a`` comes before ``b``;
* agrees with a sequential register: a read returns the latest written value, a write sets
  it, ``cas(expected, new)`` sets ``new`` and returns True exactly when the value was
  ``expected``;
* contains every completed operation with its observed result, and any subset of the
  unknown-outcome ones.

The search is exponential in the worst case, but memoizing (set of linearized operations,
register value) keeps it fast for histories with a handful of concurrent clients.
"""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["Op", "SearchTooLarge", "check", "read", "write", "cas"]


class SearchTooLarge(Exception):
    """The search explored ``max_states`` states without an answer (inconclusive)."""

_UNSET = object()


@dataclasses.dataclass(frozen=True)
class Op:
    """One operation on the register.

    ``kind`` is ``"read"``, ``"write"`` or ``"cas"``. ``value`` is what a write writes;
    ``expected``/``value`` are a cas's arguments. ``result`` is what a read returned or
    whether a cas succeeded (ignored for writes and for unknown outcomes).
    """

    kind: str
    invoke: float
    complete: float | None
    value: Any = None
    expected: Any = None
    result: Any = None
    process: Any = None

    def __post_init__(self):
        if self.kind not in ("read", "write", "cas"):
            raise ValueError(f"unknown operation kind {self.kind!r}")
        if self.complete is not None and self.complete < self.invoke:
            raise ValueError(f"{self}: completes before it is invoked")


def read(invoke, complete, result, process=None) -> Op:
    return Op("read", invoke, complete, result=result, process=process)


def write(invoke, complete, value, process=None) -> Op:
    return Op("write", invoke, complete, value=value, process=process)


def cas(invoke, complete, expected, value, result, process=None) -> Op:
    return Op("cas", invoke, complete, value=value, expected=expected, result=result,
              process=process)


def _step(op: Op, state):
    """(allowed, new state) when ``op`` is linearized with the register at ``state``."""
    known = op.complete is not None
    if op.kind == "read":
        return (state == op.result, state)
    if op.kind == "write":
        return (True, op.value)
    hit = state == op.expected
    if known and hit != bool(op.result):
        return (False, state)
    return (True, op.value if hit else state)


def check(history: list[Op], initial: Any = None, *, max_states: int = 2_000_000) -> bool:
    """True when ``history`` is linearizable for a register that starts at ``initial``.

    Raises :class:`SearchTooLarge` after exploring ``max_states`` states: refuting a long
    history with many unknown-outcome operations can take exponential time, and an
    inconclusive answer is better than a hang.
    """
    # A read whose outcome is unknown constrains nothing; leave it out.
    ops = sorted((op for op in history if not (op.kind == "read" and op.complete is None)),
                 key=lambda op: op.invoke)
    n = len(ops)
    inf = float("inf")
    completes = [op.complete if op.complete is not None else inf for op in ops]
    required = 0
    for i, op in enumerate(ops):
        if op.complete is not None:
            required |= 1 << i
    # Memo: for each (linearized completed ops, register value), the sets of unknown ops
    # already used by the states explored from there. A state that used a superset of an
    # explored state's unknown ops can do nothing that one could not (every unused unknown
    # op stays available forever), so it is skipped.
    seen: dict[tuple[int, Any], list[int]] = {}
    stack: list[tuple[int, Any]] = [(0, initial)]
    seen[(0, initial)] = [0]
    explored = 0
    while stack:
        explored += 1
        if explored > max_states:
            raise SearchTooLarge(f"no answer after {max_states} states ({n} operations, "
                                 f"{n - bin(required).count('1')} with unknown outcome)")
        done, state = stack.pop()
        if done & required == required:
            return True
        # The next operation must have been invoked before every pending (not yet
        # linearized) operation completed; ops are sorted by invoke, so the candidates
        # are the pending ones up to that bound.
        limit = inf
        pending = []
        i = (~done & (done + 1)).bit_length() - 1  # lowest pending index
        while i < n:
            if not done >> i & 1:
                if ops[i].invoke > limit:
                    break
                pending.append(i)
                if completes[i] < limit:
                    limit = completes[i]
            i += 1
        # Depth-first, trying first the operation that completed earliest and last the
        # unknown-outcome ones (so those are only assumed to have happened when needed).
        pending.sort(key=lambda j: -completes[j])
        for i in pending:
            if ops[i].invoke > limit:
                continue
            ok, new_state = _step(ops[i], state)
            if not ok:
                continue
            new_done = done | 1 << i
            used = new_done & ~required
            memo = seen.setdefault((new_done & required, new_state), [])
            if any(prev & ~used == 0 for prev in memo):
                continue
            memo[:] = [prev for prev in memo if used & ~prev != 0]
            memo.append(used)
            stack.append((new_done, new_state))
    return False
