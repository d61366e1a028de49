"""Objects of one resource in the store: keys, encoding, and store errors as API errors.

Keys are ``/registry/<group or "core">/<plural>/<namespace>/<name>`` (cluster-scoped kinds
leave out the namespace). Values are the object's JSON without ``metadata.resourceVersion``,
which is the key's ``mod_revision`` and is filled in on every read.
"""

from __future__ import annotations

import secrets

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


# A write of an object the caller hands over encodes it once, with this marker as its
# resourceVersion (last in metadata, where reads put it): the stored value is that JSON
# without the member, and the object's API JSON is that JSON with the revision in its place.
# The marker is random per process, so no value a client sends can contain it.
_MARK = f"\x00rv-{secrets.token_hex(16)}\x00"
_MARK_JSON = _json.dumps(_MARK)
_MARK_MEMBER = b',"resourceVersion":' + _MARK_JSON


def _encode_marked(obj: dict) -> bytes | None:
    """``obj`` (changed in place: its resourceVersion becomes the marker) encoded, or None
    when the marker did not come out exactly once as the last member of a metadata that has
    other members (then the caller encodes the usual way)."""
    meta = obj.get("metadata")
    if type(meta) is not dict or not meta:
        return None
    meta.pop("resourceVersion", None)
    if not meta:
        return None
    meta["resourceVersion"] = _MARK
    marked = _json.dumps(obj)
    if marked.count(_MARK_JSON) != 1 or marked.count(_MARK_MEMBER) != 1:
        meta.pop("resourceVersion")
        return None
    return marked


def _unmark(obj: dict, rv: str | None) -> None:
    """Undo :func:`_encode_marked` after a failed write (the resourceVersion goes last)."""
    if rv is None:
        obj["metadata"].pop("resourceVersion", None)
    else:
        obj["metadata"]["resourceVersion"] = rv


#: Objects this API server wrote and decoded, kept for the watch cache (see
#: :meth:`ResourceStorage.written`); a cache further behind than this decodes for itself.
HANDOVER_LIMIT = 1024

#: The API JSON of objects that writes stored (and that nobody changes any more), by id():
#: the write's response and every watch event of the object send these bytes instead of
#: encoding the object again. Entries hold the object, so an id is not reused meanwhile.
_API_JSON: dict[int, tuple[dict, bytes]] = {}


def api_json(obj: dict) -> bytes:
    """The JSON of ``obj`` as the API sends it: what a write that stored ``obj`` encoded, or
    a new encoding."""
    known = _API_JSON.get(id(obj))
    if known is not None and known[0] is obj:
        return known[1]
    return _json.dumps(obj)


def _remember_api_json(obj: dict, data: bytes) -> None:
    if len(_API_JSON) >= HANDOVER_LIMIT:
        del _API_JSON[next(iter(_API_JSON))]
    _API_JSON[id(obj)] = (obj, data)


class ResourceStorage:
    """CRUD of one kind's objects on the store driver, raising :mod:`pilothouse.model.errors`.

    The objects it returns from writes are shared with the kind's watch cache (which
    otherwise decodes the same value again from its watch event): callers must not change
    them."""

    def __init__(self, store: st.Store, kind: Kind):
        self.store, self.kind = store, kind
        self.root = f"/registry/{kind.group or 'core'}/{kind.plural}/"
        self._written: dict[tuple[str, int], dict] = {}

    def _decode_written(self, kv: st.KeyValue, obj: dict | None = None,
                        marked: bytes | None = None) -> dict:
        """The object ``kv`` stores: ``obj`` itself when the write encoded it with the
        marker (``marked``), else decoded from ``kv``; kept for the watch cache."""
        if marked is None:
            obj = decode(kv)
        else:
            revision = str(kv.mod_revision)
            obj["metadata"]["resourceVersion"] = revision
            _remember_api_json(obj, marked.replace(_MARK_JSON, _json.dumps(revision), 1))
        written = self._written
        if len(written) >= HANDOVER_LIMIT:
            del written[next(iter(written))]
        written[(kv.key, kv.mod_revision)] = obj
        return obj

    def _value(self, obj: dict, owned: bool) -> tuple[bytes, bytes | None]:
        """The stored value of ``obj``, and its marked JSON when ``owned`` allowed one."""
        marked = _encode_marked(obj) if owned else None
        if marked is None:
            return encode(obj), None
        return marked.replace(_MARK_MEMBER, b"", 1), marked

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

    async def create(self, obj: dict, *, owned: bool = False) -> dict:
        """Store a new object. ``owned``: the caller hands ``obj`` over (it shares it with
        nothing and does not change it after a successful write): it becomes the stored
        object, with its resourceVersion set, instead of a decoded copy."""
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        value, marked = self._value(obj, owned)
        try:
            kv = await _call(self.store.create(self.key_of(obj), value))
        except BaseException as exc:
            if marked is not None:
                _unmark(obj, rv)
            if isinstance(exc, st.KeyExists):
                raise errors.AlreadyExists(self.kind.plural, obj["metadata"]["name"],
                                           group=self.kind.group) from None
            raise
        return self._decode_written(kv, obj, marked)

    async def update(self, obj: dict, expected_revision: int, *, owned: bool = False) -> dict:
        """Compare-and-swap on ``expected_revision`` (0: unconditional). ``owned``: as for
        :meth:`create`."""
        name = obj["metadata"]["name"]
        rv = obj["metadata"].get("resourceVersion")
        value, marked = self._value(obj, owned)
        try:
            kv = await _call(self.store.update(self.key_of(obj), value,
                                               expected_revision=expected_revision))
        except BaseException as exc:
            if marked is not None:
                _unmark(obj, rv)
            if isinstance(exc, st.KeyNotFound):
                raise self._not_found(name) from None
            if isinstance(exc, st.RevisionConflict):
                raise errors.Conflict(self.kind.plural, name, group=self.kind.group) from None
            raise
        return self._decode_written(kv, obj, marked)

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
