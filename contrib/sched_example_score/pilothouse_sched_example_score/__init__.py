"""An example third-party scheduler plugin: a Score plugin that prefers nodes carrying a
label (by default ``example.com/tier=fast``).

It imports only the core's public contract (:mod:`pilothouse.interfaces.scheduler`), is
found by its entry point (group ``pilothouse.scheduler``, name ``PreferNodeLabel``) and gets
its options from the profile entry that enables it::

    - {name: PreferNodeLabel, weight: 5, options: {label: "example.com/tier=fast"}}
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable

from pilothouse.interfaces.scheduler import MAX_NODE_SCORE, CycleState, NodeInfo

__all__ = ["PreferNodeLabel"]


class PreferNodeLabel:
    """Score: MAX_NODE_SCORE for nodes with the label (``key=value``, or just ``key`` for
    any value), 0 for the others. The profile's weight decides how much that counts against
    the other Score plugins (each contributes weight × 0..100)."""

    @dataclasses.dataclass
    class Options:
        #: ``key=value`` or ``key``.
        label: str = "example.com/tier=fast"

        def __post_init__(self) -> None:
            key = self.label.split("=", 1)[0]
            if not key:
                raise ValueError("label must be 'key' or 'key=value'")

    def __init__(self, options: "PreferNodeLabel.Options | None" = None):
        self.options = options or PreferNodeLabel.Options()
        key, sep, value = self.options.label.partition("=")
        self.key, self.value = key, (value if sep else None)

    def score(self, state: CycleState, pod: dict, node: NodeInfo) -> int:
        labels = node.labels
        if self.key not in labels:
            return 0
        if self.value is not None and labels[self.key] != self.value:
            return 0
        return MAX_NODE_SCORE

    def normalize_scores(self, state: CycleState, pod: dict,
                         scores: dict[str, int]) -> dict[str, int]:
        return scores  # already within [0, MAX_NODE_SCORE]

    def sign(self, state: CycleState, pod: dict) -> Hashable | None:
        """Optional (:class:`pilothouse.interfaces.scheduler.Sign`): lets the scheduler reuse
        this plugin's score of an unchanged node for later pods. The fragment must capture
        everything ``score`` reads besides the node: here nothing of the pod and nothing
        cluster-wide (only the node's labels and this instance's options), so every pod gets
        the same fragment. A score that read the pod (say, a label value taken from the pod)
        would return that value; one that read other nodes or pods (e.g. how many pods of
        the same app a zone runs) would return None: reuse would be wrong for it."""
        return ()
