"""ImageLocality: prefer nodes that already hold the pod's images, weighted by how widely
each image is spread (an image on every node says little)."""

from __future__ import annotations

from collections.abc import Hashable

from pilothouse.interfaces.scheduler import (MAX_NODE_SCORE, CycleState, Handle, NodeInfo,
                                             Status, normalized_image_name)

MB = 1024 * 1024
MIN_THRESHOLD = 23 * MB
MAX_CONTAINER_THRESHOLD = 1000 * MB
_KEY = "ImageLocality"
_SIGN_KEY = "ImageLocality/sign"


class ImageLocality:
    """PreScore + Score + Sign. Score = 100 × (Σ size × nodes-with-image / all-nodes −
    23 MiB) / (1000 MiB × containers − 23 MiB), clamped, as in kube-scheduler. The signature
    holds the pod's images and the cluster-wide spread read through the handle (so a change
    in how many nodes hold an image gives new signatures); without a handle the spread is
    counted over the feasible nodes and the plugin does not sign."""

    def __init__(self) -> None:
        self.handle: Handle | None = None

    def set_handle(self, handle: Handle) -> None:
        self.handle = handle

    @staticmethod
    def _images(pod: dict) -> list[str]:
        spec = pod.get("spec") or {}
        return [normalized_image_name(c.get("image") or "")
                for c in (spec.get("initContainers") or []) + (spec.get("containers") or [])]

    def _spread(self, images: list[str]) -> dict[str, float]:
        total = len(self.handle.node_infos()) or 1
        return {i: self.handle.nodes_with_image(i) / total for i in set(images)}

    def sign(self, state: CycleState, pod: dict) -> Hashable | None:
        if self.handle is None:
            return None  # spread over the feasible nodes: depends on other nodes
        images = self._images(pod)
        spread = self._spread(images)
        # Score reads exactly these: kept for this cycle's pre_score, so both agree
        state.write(_SIGN_KEY, (images, spread))
        return tuple(images), tuple(sorted(spread.items()))

    def pre_score(self, state: CycleState, pod: dict, nodes: list[NodeInfo]) -> Status:
        signed = state.get(_SIGN_KEY)
        if signed is not None:
            images, spread = signed
        elif self.handle is not None:
            images = self._images(pod)
            spread = self._spread(images)
        else:
            images = self._images(pod)
            total = len(nodes) or 1
            spread = {i: sum(1 for n in nodes if i in n.images) / total for i in set(images)}
        if not any(spread.values()):
            return Status.skip()  # no node has any of the images: every node scores 0
        state.write(_KEY, (images, spread))
        return Status()

    def score(self, state: CycleState, pod: dict, node: NodeInfo) -> int:
        images, spread = state.read(_KEY)
        if not images:
            return 0
        total = 0
        for image in images:
            size = node.images.get(image)
            if size:
                total += int(size * spread[image])
        max_threshold = MAX_CONTAINER_THRESHOLD * len(images)
        total = min(max(total, MIN_THRESHOLD), max_threshold)
        return MAX_NODE_SCORE * (total - MIN_THRESHOLD) // (max_threshold - MIN_THRESHOLD)

    #: Raw scores are 0..100 already: the framework need not call normalize_scores.
    scores_normalized = True

    def normalize_scores(self, state: CycleState, pod: dict,
                         scores: dict[str, int]) -> dict[str, int]:
        return scores
