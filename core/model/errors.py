"""API errors as Kubernetes ``Status`` objects, and field errors with paths.

Every error the API server returns to a client is a :class:`StatusError`; its
:meth:`~StatusError.to_status` is the JSON body (``kind: Status``) and its ``code`` the HTTP
status. Each subclass fixes the ``reason`` and ``code`` Kubernetes uses and builds the message
the way Kubernetes words it, so kubectl and the official clients show what users expect:

====  =========================  ===========================  ===============================
code  class                      reason                       message
====  =========================  ===========================  ===============================
400   ``BadRequest``             ``BadRequest``               as given
401   ``Unauthorized``           ``Unauthorized``             as given, or ``not authorized``
403   ``Forbidden``              ``Forbidden``                ``pods "web" is forbidden: ...``
404   ``NotFound``               ``NotFound``                 ``pods "web" not found``
405   ``MethodNotAllowed``       ``MethodNotAllowed``         ``watch is not supported on
                                                              resources of kind "pods"``
406   ``NotAcceptable``          ``NotAcceptable``            ``only the following media
                                                              types are accepted: ...``
409   ``AlreadyExists``          ``AlreadyExists``            ``pods "web" already exists``
409   ``Conflict``               ``Conflict``                 ``Operation cannot be fulfilled
                                                              on pods "web": ...``
410   ``Gone`` (= ``Expired``)   ``Expired``                  as given
413   ``RequestEntityTooLarge``  ``RequestEntityTooLarge``    ``Request entity too large: ...``
415   ``UnsupportedMediaType``   ``UnsupportedMediaType``     ``the body of the request was in
                                                              an unknown format - ...``
422   ``Invalid``                ``Invalid``                  ``Pod "web" is invalid: ...``
429   ``TooManyRequests``        ``TooManyRequests``          as given
500   ``InternalError``          ``InternalError``            ``Internal error occurred: ...``
503   ``ServiceUnavailable``     ``ServiceUnavailable``       as given
504   ``Timeout``                ``Timeout``                  ``Timeout: ...``
====  =========================  ===========================  ===============================

Resource-scoped errors name the *qualified resource* (``deployments.apps``; plain ``pods``
for the core group) in the message and put the resource plural in ``details.kind``, as
Kubernetes does; :class:`Invalid` names the *qualified kind* (``Deployment.apps``).

:class:`FieldError` is one problem at one field path (``spec.containers[0].image``), worded
like Kubernetes' ``field.Error``: ``<path>: <Type text>[: <value>][: <detail>]``. Validation
returns lists of them; :meth:`Invalid.from_errors` turns a list into the 422 error, one
``details.causes`` entry per field error.

:meth:`StatusError.from_status` goes the other way (for API clients): a ``Status`` dict back
to the matching subclass.

Since 0.1.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Iterable
from typing import Any

__all__ = [
    "AlreadyExists",
    "BadRequest",
    "Conflict",
    "Expired",
    "FieldError",
    "FieldErrorType",
    "FieldPath",
    "Forbidden",
    "Gone",
    "InternalError",
    "Invalid",
    "MethodNotAllowed",
    "NotAcceptable",
    "NotFound",
    "OPTIMISTIC_LOCK_MESSAGE",
    "RequestEntityTooLarge",
    "ServiceUnavailable",
    "StatusError",
    "Timeout",
    "TooManyRequests",
    "Unauthorized",
    "UnsupportedMediaType",
    "go_quote",
    "qualified_kind",
    "qualified_resource",
]

#: The reason a resourceVersion precondition failed (message tail of a :class:`Conflict`).
OPTIMISTIC_LOCK_MESSAGE = ("the object has been modified; please apply your changes to the "
                           "latest version and try again")


def qualified_resource(resource: str, group: str = "") -> str:
    """``deployments.apps``; just ``pods`` for the core group."""
    return f"{resource}.{group}" if group else resource


def qualified_kind(kind: str, group: str = "") -> str:
    """``Deployment.apps``; just ``Pod`` for the core group."""
    return f"{kind}.{group}" if group else kind


_GO_ESCAPES = {'"': '\\"', "\\": "\\\\", "\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n",
               "\r": "\\r", "\t": "\\t", "\v": "\\v"}


def go_quote(s: str) -> str:
    """Quote a string the way Go's ``%q`` does (what Kubernetes messages show)."""
    out = []
    for ch in s:
        if ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return '"' + "".join(out) + '"'


class StatusError(Exception):
    """Base class of every API error. ``message``, ``reason``, ``code`` and the details
    (``name``, ``group``, ``kind``, ``uid``, ``causes``, ``retry_after_seconds``) are what
    :meth:`to_status` reports. ``causes`` are dicts with ``reason``, ``message`` and
    ``field`` (each optional).

    Subclasses have constructors that word the message like Kubernetes; construct the base
    class directly only for a code Kubernetes has no reason for.
    """

    code: int = 500
    reason: str = "InternalError"

    def __init__(self, message: str, *, code: int | None = None, reason: str | None = None,
                 name: str = "", group: str = "", kind: str = "", uid: str = "",
                 causes: Iterable[dict] = (), retry_after_seconds: int | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if reason is not None:
            self.reason = reason
        self.name, self.group, self.kind, self.uid = name, group, kind, uid
        self.causes = [dict(c) for c in causes]
        self.retry_after_seconds = retry_after_seconds

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"

    @property
    def details(self) -> dict:
        """``details`` of the Status; empty members left out as in Kubernetes' JSON."""
        details: dict[str, Any] = {}
        for key, value in (("name", self.name), ("group", self.group), ("kind", self.kind),
                           ("uid", self.uid)):
            if value:
                details[key] = value
        if self.causes:
            details["causes"] = [{k: v for k, v in c.items() if v} for c in self.causes]
        if self.retry_after_seconds:
            details["retryAfterSeconds"] = self.retry_after_seconds
        return details

    def to_status(self) -> dict:
        """The ``Status`` object (a fresh dict) to send as the response body."""
        status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                  "message": self.message, "reason": self.reason}
        details = self.details
        if details:
            status["details"] = details
        status["code"] = self.code
        return status

    @classmethod
    def from_status(cls, status: dict) -> StatusError:
        """Rebuild the error a ``Status`` dict describes, as the subclass its ``reason`` (or,
        failing that, its ``code``) names; the message is kept verbatim."""
        reason = status.get("reason") or ""
        code = int(status.get("code") or 0)
        target = _BY_REASON.get(reason) or _BY_CODE.get(code) or StatusError
        details = status.get("details") or {}
        err = target.__new__(target)
        StatusError.__init__(
            err, status.get("message") or "", code=code or None, reason=reason or None,
            name=details.get("name", ""), group=details.get("group", ""),
            kind=details.get("kind", ""), uid=details.get("uid", ""),
            causes=details.get("causes") or (),
            retry_after_seconds=details.get("retryAfterSeconds"))
        return err


class BadRequest(StatusError):
    """400: the request itself is malformed (bad query parameter, undecodable body, a
    namespace in the body that differs from the URL's)."""

    code, reason = 400, "BadRequest"

    def __init__(self, message: str, **kw: Any):
        super().__init__(message, **kw)


class Unauthorized(StatusError):
    """401: the request carries no valid credentials."""

    code, reason = 401, "Unauthorized"

    def __init__(self, message: str = "", **kw: Any):
        super().__init__(message or "not authorized", **kw)


class Forbidden(StatusError):
    """403: authorization or admission refused. ``pods "web" is forbidden: <why>``; without
    a name ``pods is forbidden: <why>``."""

    code, reason = 403, "Forbidden"

    def __init__(self, resource: str, name: str, why: str, *, group: str = "", **kw: Any):
        qr = qualified_resource(resource, group)
        head = f"{qr} {go_quote(name)}" if name else qr
        super().__init__(f"{head} is forbidden: {why}", name=name, group=group, kind=resource,
                         **kw)


class NotFound(StatusError):
    """404: ``pods "web" not found``."""

    code, reason = 404, "NotFound"

    def __init__(self, resource: str, name: str, *, group: str = "", **kw: Any):
        super().__init__(f"{qualified_resource(resource, group)} {go_quote(name)} not found",
                         name=name, group=group, kind=resource, **kw)


class MethodNotAllowed(StatusError):
    """405: ``<verb> is not supported on resources of kind "pods"``."""

    code, reason = 405, "MethodNotAllowed"

    def __init__(self, resource: str, action: str, *, group: str = "", **kw: Any):
        qr = qualified_resource(resource, group)
        super().__init__(f"{action} is not supported on resources of kind {go_quote(qr)}",
                         group=group, kind=resource, **kw)


class NotAcceptable(StatusError):
    """406: the client's Accept header names no media type the server can produce."""

    code, reason = 406, "NotAcceptable"

    def __init__(self, accepted: Iterable[str], **kw: Any):
        super().__init__("only the following media types are accepted: "
                         + ", ".join(accepted), **kw)


class AlreadyExists(StatusError):
    """409: create of an object whose name is taken. ``pods "web" already exists``."""

    code, reason = 409, "AlreadyExists"

    def __init__(self, resource: str, name: str, *, group: str = "", **kw: Any):
        super().__init__(f"{qualified_resource(resource, group)} {go_quote(name)} already "
                         "exists", name=name, group=group, kind=resource, **kw)


class Conflict(StatusError):
    """409: a write lost a compare-and-swap. The caller re-reads and retries. The default
    ``why`` is Kubernetes' optimistic-lock message."""

    code, reason = 409, "Conflict"

    def __init__(self, resource: str, name: str, why: str = OPTIMISTIC_LOCK_MESSAGE, *,
                 group: str = "", **kw: Any):
        super().__init__(f"Operation cannot be fulfilled on {qualified_resource(resource, group)}"
                         f" {go_quote(name)}: {why}", name=name, group=group, kind=resource,
                         **kw)


class Gone(StatusError):
    """410, reason ``Expired``: the requested resourceVersion is older than the retained
    history (a watch or a continue token too old). The client lists again. Kubernetes
    deprecated its ``Gone`` reason for ``Expired``; a Status with reason ``Gone`` still
    maps here through :meth:`StatusError.from_status`."""

    code, reason = 410, "Expired"

    def __init__(self, message: str, **kw: Any):
        super().__init__(message, **kw)


Expired = Gone


class RequestEntityTooLarge(StatusError):
    """413: the body is larger than the server accepts."""

    code, reason = 413, "RequestEntityTooLarge"

    def __init__(self, message: str, **kw: Any):
        super().__init__(f"Request entity too large: {message}", **kw)


class UnsupportedMediaType(StatusError):
    """415: the request body's Content-Type is not one the server decodes (e.g. a patch
    type the resource does not support)."""

    code, reason = 415, "UnsupportedMediaType"

    def __init__(self, accepted: Iterable[str], **kw: Any):
        super().__init__("the body of the request was in an unknown format - accepted media "
                         "types include: " + ", ".join(accepted), **kw)


class Invalid(StatusError):
    """422: the object failed validation. Build it with :meth:`from_errors` (or this
    constructor: ``Invalid(kind, name, errors, group=...)``)."""

    code, reason = 422, "Invalid"

    def __init__(self, kind: str, name: str, errors: Iterable[FieldError], *, group: str = "",
                 **kw: Any):
        errors = list(errors)
        head = f"{qualified_kind(kind, group)} {go_quote(name)} is invalid"
        summary = _aggregate([str(e) for e in errors])
        super().__init__(f"{head}: {summary}" if summary else head, name=name, group=group,
                         kind=kind, causes=[e.to_cause() for e in errors], **kw)
        self.errors = errors

    @classmethod
    def from_errors(cls, kind: str, group: str, name: str,
                    errors: Iterable[FieldError]) -> Invalid:
        """``Deployment.apps "web" is invalid: [spec.replicas: Invalid value: -1: must be
        greater than or equal to 0, ...]`` (no brackets for a single distinct error)."""
        return cls(kind, name, errors, group=group)


class TooManyRequests(StatusError):
    """429: rate limited or a resource is temporarily saturated (also the eviction API when
    a PodDisruptionBudget forbids it). ``retry_after_seconds`` becomes ``Retry-After``."""

    code, reason = 429, "TooManyRequests"

    def __init__(self, message: str, retry_after_seconds: int | None = None, **kw: Any):
        super().__init__(message, retry_after_seconds=retry_after_seconds, **kw)


class InternalError(StatusError):
    """500: a server bug or a failing dependency. ``Internal error occurred: <err>``."""

    code, reason = 500, "InternalError"

    def __init__(self, err: Any, **kw: Any):
        kw.setdefault("causes", [{"message": str(err)}])
        super().__init__(f"Internal error occurred: {err}", **kw)


class ServiceUnavailable(StatusError):
    """503: the server (or its store) cannot serve right now; retry later."""

    code, reason = 503, "ServiceUnavailable"

    def __init__(self, message: str, **kw: Any):
        super().__init__(message, **kw)


class Timeout(StatusError):
    """504: the request could not complete in time (e.g. a wait for a store write)."""

    code, reason = 504, "Timeout"

    def __init__(self, message: str, retry_after_seconds: int | None = None, **kw: Any):
        super().__init__(f"Timeout: {message}", retry_after_seconds=retry_after_seconds, **kw)


_BY_REASON: dict[str, type[StatusError]] = {
    cls.reason: cls for cls in (BadRequest, Unauthorized, Forbidden, NotFound, MethodNotAllowed,
                                NotAcceptable, AlreadyExists, Conflict, Gone,
                                RequestEntityTooLarge, UnsupportedMediaType, Invalid,
                                TooManyRequests, InternalError, ServiceUnavailable, Timeout)}
_BY_REASON["Gone"] = Gone
_BY_CODE: dict[int, type[StatusError]] = {
    400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound, 405: MethodNotAllowed,
    406: NotAcceptable, 410: Gone, 413: RequestEntityTooLarge, 415: UnsupportedMediaType,
    422: Invalid, 429: TooManyRequests, 500: InternalError, 503: ServiceUnavailable,
    504: Timeout}


def _aggregate(messages: list[str]) -> str:
    """Kubernetes' aggregate error text: distinct messages in order; bracketed when > 1."""
    seen: list[str] = []
    for m in messages:
        if m not in seen:
            seen.append(m)
    if len(seen) <= 1:
        return seen[0] if seen else ""
    return "[" + ", ".join(seen) + "]"


# --------------------------------------------------------------------------- field errors


class FieldPath:
    """An immutable path to a field: ``FieldPath("spec").child("containers").index(0)`` is
    ``spec.containers[0]``; ``.key("app")`` appends ``[app]``. ``str()`` gives the text;
    the empty root is ``""``. Every method returns a new path."""

    __slots__ = ("_parts",)

    def __init__(self, *names: str):
        self._parts: tuple[str, ...] = ()
        for n in names:
            self._parts = self._child(n)

    def _child(self, name: str) -> tuple[str, ...]:
        return self._parts + ((("." if self._parts else "") + name),) if name else self._parts

    def child(self, *names: str) -> FieldPath:
        """Append named fields: ``metadata`` → ``metadata.labels``."""
        parts = self._parts
        for n in names:
            if n:
                parts = parts + ((("." if parts else "") + n),)
        p = _new_path(FieldPath)
        p._parts = parts
        return p

    def index(self, i: int) -> FieldPath:
        """Append a list index: ``containers`` → ``containers[0]``."""
        p = FieldPath()
        p._parts = self._parts + (f"[{i}]",)
        return p

    def key(self, k: str) -> FieldPath:
        """Append a map key: ``labels`` → ``labels[app]``."""
        p = FieldPath()
        p._parts = self._parts + (f"[{k}]",)
        return p

    def __str__(self) -> str:
        return "".join(self._parts)

    def __repr__(self) -> str:
        return f"FieldPath({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (FieldPath, str)):
            return str(self) == str(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(str(self))


_new_path = object.__new__  # a FieldPath without running __init__ (child() is a hot path)


class FieldErrorType(str, enum.Enum):
    """The kinds of field error. The value is the Status cause ``reason``; :attr:`text` is
    what the message shows."""

    NOT_FOUND = "FieldValueNotFound"
    REQUIRED = "FieldValueRequired"
    DUPLICATE = "FieldValueDuplicate"
    INVALID = "FieldValueInvalid"
    NOT_SUPPORTED = "FieldValueNotSupported"
    FORBIDDEN = "FieldValueForbidden"
    TOO_LONG = "FieldValueTooLong"
    TOO_MANY = "FieldValueTooMany"
    INTERNAL = "InternalError"
    TYPE_INVALID = "FieldValueTypeInvalid"

    @property
    def text(self) -> str:
        return _TYPE_TEXT[self]


_TYPE_TEXT = {
    FieldErrorType.NOT_FOUND: "Not found", FieldErrorType.REQUIRED: "Required value",
    FieldErrorType.DUPLICATE: "Duplicate value", FieldErrorType.INVALID: "Invalid value",
    FieldErrorType.NOT_SUPPORTED: "Unsupported value", FieldErrorType.FORBIDDEN: "Forbidden",
    FieldErrorType.TOO_LONG: "Too long", FieldErrorType.TOO_MANY: "Too many",
    FieldErrorType.INTERNAL: "Internal error", FieldErrorType.TYPE_INVALID: "Invalid value"}
# Types whose message never shows the offending value.
_NO_VALUE = {FieldErrorType.REQUIRED, FieldErrorType.FORBIDDEN, FieldErrorType.TOO_LONG,
             FieldErrorType.INTERNAL}
_MISSING = object()


def _show_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = repr(value)
        return text[:-2] if text.endswith(".0") else text
    if isinstance(value, str):
        return go_quote(value)
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)
    return str(value)


@dataclasses.dataclass(frozen=True)
class FieldError:
    """One validation problem: ``type`` (:class:`FieldErrorType`), ``path`` (text such as
    ``spec.template.spec.containers[0].image``), the offending ``value`` (shown in the
    message for the types that show one) and a ``detail`` sentence.

    ``str(err)`` is Kubernetes' wording, e.g. ``metadata.name: Invalid value: "Foo": a
    lowercase RFC 1123 subdomain must ...``; :meth:`body` is the part after the path (the
    Status cause message). Build with the class methods, which mirror Kubernetes'
    ``field.Required``, ``field.Invalid`` and so on.
    """

    type: FieldErrorType
    path: str
    value: Any = None
    detail: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", str(self.path))
        object.__setattr__(self, "type", FieldErrorType(self.type))

    def body(self) -> str:
        """The message without the path: ``Invalid value: -1: must be ...``."""
        text = self.type.text
        if self.type not in _NO_VALUE:
            text += ": " + _show_value(self.value)
        if self.detail:
            text += ": " + self.detail
        return text

    def __str__(self) -> str:
        return f"{self.path}: {self.body()}" if self.path else self.body()

    def to_cause(self) -> dict:
        """The ``details.causes`` entry of this error."""
        return {"reason": self.type.value, "message": self.body(), "field": self.path}

    @classmethod
    def required(cls, path: FieldPath | str, detail: str = "") -> FieldError:
        """A required field is missing or empty."""
        return cls(FieldErrorType.REQUIRED, path, detail=detail)

    @classmethod
    def invalid(cls, path: FieldPath | str, value: Any, detail: str) -> FieldError:
        """A value is malformed or out of range; ``detail`` says why."""
        return cls(FieldErrorType.INVALID, path, value, detail)

    @classmethod
    def not_supported(cls, path: FieldPath | str, value: Any,
                      valid: Iterable[str] = ()) -> FieldError:
        """A value is not one of an enumeration; ``valid`` are listed in the message."""
        valid = list(valid)
        detail = ("supported values: " + ", ".join(go_quote(str(v)) for v in valid)
                  if valid else "")
        return cls(FieldErrorType.NOT_SUPPORTED, path, value, detail)

    @classmethod
    def duplicate(cls, path: FieldPath | str, value: Any) -> FieldError:
        """A value that must be unique (a name in a list) repeats."""
        return cls(FieldErrorType.DUPLICATE, path, value)

    @classmethod
    def forbidden(cls, path: FieldPath | str, detail: str) -> FieldError:
        """A field may not be set (in this context)."""
        return cls(FieldErrorType.FORBIDDEN, path, detail=detail)

    @classmethod
    def too_long(cls, path: FieldPath | str, value: Any, max_length: int) -> FieldError:
        """A value (or the total of a map) exceeds ``max_length`` bytes."""
        return cls(FieldErrorType.TOO_LONG, path, value, f"must have at most {max_length} bytes")

    @classmethod
    def too_many(cls, path: FieldPath | str, actual: int, max_items: int) -> FieldError:
        """A list has more than ``max_items`` items."""
        return cls(FieldErrorType.TOO_MANY, path, actual,
                   f"must have at most {max_items} items")

    @classmethod
    def type_invalid(cls, path: FieldPath | str, value: Any, detail: str) -> FieldError:
        """A value has the wrong JSON type (a string where a number belongs)."""
        return cls(FieldErrorType.TYPE_INVALID, path, value, detail)

    @classmethod
    def not_found(cls, path: FieldPath | str, value: Any) -> FieldError:
        """A reference (e.g. a volume mount's volume name) names nothing."""
        return cls(FieldErrorType.NOT_FOUND, path, value)

    @classmethod
    def internal(cls, path: FieldPath | str, detail: str) -> FieldError:
        """Validation itself failed."""
        return cls(FieldErrorType.INTERNAL, path, detail=detail)
