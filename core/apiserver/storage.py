"""Objects of one resource in the store: keys, encoding, and store errors as API errors.

Keys are ``/registry/<group or "core">/<plural>/<namespace>/<name>`` (cluster-scoped kinds
leave out the namespace). Values are the object's JSON without ``metadata.resourceVersion``,
which is the key's ``mod_revision`` and is filled in on every read.
"""

from __future__ import annotations

from pilothouse.apiserver import _json

from pilothouse.interfaces import store as st
from pilothouse.model import errors
from pilothouse.model.kinds import Kind


def decode(kv: st.KeyValue) -> dict:
    obj = _json.loads(kv.value)
    obj.setdefault("metadata", {})["resourceVersion"] = str(kv.mod_revision)
    return obj


def encode(obj: dict) -> bytes:
    meta = obj.get("metadata") or {}
    if "resourceVersion" in meta:
        obj = {**obj, "metadata": {k: v for k, v in meta.items() if k != "resourceVersion"}}
    return _json.dumps(obj)


#: Objects this API server wrote and decoded, kept for the watch cache (see
#: :meth:`ResourceStorage.written`); a cache further behind than this decodes for itself.
HANDOVER_LIMIT = 1024


class ResourceStorage:
    """CRUD of one kind's objects on the store driver, raising :mod:`pilothouse.model.errors`.

    The objects it returns from writes are shared with the kind's watch cache (which
    otherwise decodes the same value again from its watch event): callers must not change
    them."""

    def __init__(self, store: st.Store, kind: Kind):
        self.store, self.kind = store, kind
        self.root = f"/registry/{kind.group or 'core'}/{kind.plural}/"
        self._written: dict[tuple[str, int], dict] = {}

    def _decode_written(self, kv: st.KeyValue) -> dict:
        obj = decode(kv)
        written = self._written
        if len(written) >= HANDOVER_LIMIT:
            del written[next(iter(written))]
        written[(kv.key, kv.mod_revision)] = obj
        return obj

    def written(self, kv: st.KeyValue) -> dict | None:
        """The object this storage decoded from ``kv`` when it wrote it (once: the entry is
        dropped), or None. A key's value at a revision never changes, so it is what
        :func:`decode` would give for ``kv``."""
        return self._written.pop((kv.key, kv.mod_revision), None) if self._written else None

    def key(self, namespace: str, name: str) -> str:
        return f"{self.root}{namespace}/{name}" if self.kind.namespaced else f"{self.root}{name}"

    def prefix(self, namespace: str = "") -> str:
        return f"{self.root}{namespace}/" if namespace and self.kind.namespaced else self.root

    def key_of(self, obj: dict) -> str:
        meta = obj["metadata"]
        return self.key(meta.get("namespace", ""), meta["name"])

    def _not_found(self, name: str) -> errors.NotFound:
        return errors.NotFound(self.kind.plural, name, group=self.kind.group)

    async def get(self, namespace: str, name: str) -> dict:
        kv = await _call(self.store.get(self.key(namespace, name)))
        if kv is None:
            raise self._not_found(name)
        return decode(kv)

    async def create(self, obj: dict) -> dict:
        try:
            kv = await _call(self.store.create(self.key_of(obj), encode(obj)))
        except st.KeyExists:
            raise errors.AlreadyExists(self.kind.plural, obj["metadata"]["name"],
                                       group=self.kind.group) from None
        return self._decode_written(kv)

    async def update(self, obj: dict, expected_revision: int) -> dict:
        """Compare-and-swap on ``expected_revision`` (0: unconditional)."""
        name = obj["metadata"]["name"]
        try:
            kv = await _call(self.store.update(self.key_of(obj), encode(obj),
                                               expected_revision=expected_revision))
        except st.KeyNotFound:
            raise self._not_found(name) from None
        except st.RevisionConflict:
            raise errors.Conflict(self.kind.plural, name, group=self.kind.group) from None
        return self._decode_written(kv)

    async def delete(self, namespace: str, name: str, expected_revision: int = 0) -> dict:
        try:
            kv = await _call(self.store.delete(self.key(namespace, name),
                                               expected_revision=expected_revision))
        except st.KeyNotFound:
            raise self._not_found(name) from None
        except st.RevisionConflict:
            raise errors.Conflict(self.kind.plural, name, group=self.kind.group) from None
        return decode(kv)

    async def list(self, namespace: str = "", *, revision: int = 0, limit: int = 0,
                   start_after: str | None = None) -> st.ListResult:
        return await _call(self.store.list(self.prefix(namespace), revision=revision,
                                           limit=limit, start_after=start_after))


async def _call(coro):
    """Await a store call, turning store failures into API errors."""
    try:
        return await coro
    except st.Compacted as exc:
        raise errors.Gone(f"The resourceVersion for the provided list is too old: {exc}") \
            from None
    except st.StoreUnavailable as exc:
        raise errors.ServiceUnavailable(f"storage is unavailable: {exc}") from None
    except (st.KeyExists, st.KeyNotFound, st.RevisionConflict):
        raise
    except st.StoreError as exc:
        raise errors.InternalError(f"storage error: {exc}") from None
