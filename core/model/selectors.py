"""Label selectors and field selectors, as in ``?labelSelector=`` / ``?fieldSelector=`` and
in ``spec.selector`` of workloads.

**Label selectors.** :meth:`LabelSelector.parse` reads Kubernetes' string syntax::

    app=web, tier!=db, env in (prod,staging), track notin (canary), gpu, !legacy, rev>3

Terms are ANDed. ``=``/``==`` need the label with that value; ``!=`` and ``notin`` also
match objects without the label; ``key`` and ``!key`` test presence; ``>``/``<`` compare
integer values. Keys must be qualified names and values label values, checked as Kubernetes
checks them; a syntax or validation error raises :class:`SelectorError` (a
:class:`~pilothouse.model.errors.BadRequest`) worded like Kubernetes' parser.
:meth:`LabelSelector.from_dict` builds one from a ``LabelSelector`` object (``matchLabels``,
``matchExpressions`` with ``In``, ``NotIn``, ``Exists``, ``DoesNotExist``).

An empty selector (``""``, ``{}``) matches everything; :data:`NOTHING` (what
``from_dict(None)`` returns: a workload without a selector) matches nothing.
:meth:`LabelSelector.to_string` gives the canonical string, terms sorted by key.

**Field selectors.** :meth:`FieldSelector.parse` reads ``k=v``, ``k==v`` and ``k!=v`` terms
joined by commas (``\\``-escape ``,``, ``=`` and ``\\`` in values). Which fields a kind
supports is fixed (:func:`supported_fields`): every kind has ``metadata.name`` and
``metadata.namespace``; pods, events, secrets, nodes, namespaces, replicasets and jobs add
their own. :meth:`FieldSelector.check` raises :class:`~pilothouse.model.errors.BadRequest`
``field label not supported: <field>`` for anything else; :meth:`FieldSelector.matches`
evaluates against an object through :func:`field_set`.

Since 0.1.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from pilothouse.model.errors import BadRequest, FieldError, FieldPath
from pilothouse.model.validation import (is_qualified_name, is_valid_label_value,
                                         validate_labels)

__all__ = [
    "EVERYTHING", "FieldSelector", "FieldTerm", "LabelSelector", "NOTHING", "Requirement",
    "SelectorError", "field_set", "parse_field_selector", "parse_label_selector",
    "selector_from_set", "supported_fields", "validate_label_selector",
]


class SelectorError(BadRequest, ValueError):
    """A selector does not parse or is invalid. A 400 when it reaches a client."""


# ---------------------------------------------------------------------- requirements

_OPS = ("in", "notin", "=", "==", "!=", "exists", "!", "gt", "lt")
_DICT_OPS = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}


@dataclasses.dataclass(frozen=True)
class Requirement:
    """One term: ``key``, ``operator`` (``=``, ``==``, ``!=``, ``in``, ``notin``,
    ``exists``, ``!`` for does-not-exist, ``gt``, ``lt``) and ``values`` (sorted, distinct).
    Build with :meth:`new`, which validates."""

    key: str
    operator: str
    values: tuple[str, ...] = ()

    @classmethod
    def new(cls, key: str, operator: str, values: Iterable[str] = (),
            path: FieldPath | None = None) -> Requirement:
        """Validate and build (Kubernetes' ``NewRequirement``); raises
        :class:`SelectorError` listing every problem."""
        vals = sorted(set(values))
        path = path or FieldPath()
        errs = []
        for msg in is_qualified_name(key):
            errs.append(FieldError.invalid(path.child("key"), key, msg))
        vpath = path.child("values")
        if operator in ("in", "notin"):
            if not vals:
                errs.append(FieldError.invalid(vpath, vals,
                                               "for 'in', 'notin' operators, values set can't "
                                               "be empty"))
        elif operator in ("=", "==", "!="):
            if len(vals) != 1:
                errs.append(FieldError.invalid(vpath, vals, "exact-match compatibility "
                                                            "requires one single value"))
        elif operator in ("exists", "!"):
            if vals:
                errs.append(FieldError.invalid(vpath, vals, "values set must be empty for "
                                                            "exists and does not exist"))
        elif operator in ("gt", "lt"):
            if len(vals) != 1:
                errs.append(FieldError.invalid(vpath, vals, "for 'Gt', 'Lt' operators, "
                                                            "exactly one value is required"))
            for i, v in enumerate(vals):
                if not _is_int(v):
                    errs.append(FieldError.invalid(vpath.index(i), v, "for 'Gt', 'Lt' "
                                                   "operators, the value must be an integer"))
        else:
            errs.append(FieldError.not_supported(path.child("operator"), operator, _OPS))
        for i, v in enumerate(vals):
            msgs = is_valid_label_value(v)
            if msgs:
                errs.append(FieldError.invalid(vpath.index(i).key(key), v, "; ".join(msgs)))
        if errs:
            raise SelectorError(_join(errs))
        return cls(key, operator, tuple(vals))

    def matches(self, labels: Mapping[str, str]) -> bool:
        op, present = self.operator, self.key in labels
        if op in ("=", "==", "in"):
            return present and labels[self.key] in self.values
        if op in ("!=", "notin"):
            return not present or labels[self.key] not in self.values
        if op == "exists":
            return present
        if op == "!":
            return not present
        if not present or not _is_int(labels[self.key]):
            return False
        have, want = int(labels[self.key]), int(self.values[0])
        return have > want if op == "gt" else have < want

    def __str__(self) -> str:
        op, key = self.operator, self.key
        if op == "exists":
            return key
        if op == "!":
            return "!" + key
        if op in ("in", "notin"):
            return f"{key} {op} ({','.join(self.values)})"
        sym = {"gt": ">", "lt": "<"}.get(op, op)
        return f"{key}{sym}{self.values[0]}"


def _is_int(text: str) -> bool:
    t = text[1:] if text[:1] in "+-" else text
    return t.isdigit() and t.isascii()


def _join(errs: list[FieldError]) -> str:
    msgs: list[str] = []
    for e in errs:
        if str(e) not in msgs:
            msgs.append(str(e))
    return msgs[0] if len(msgs) == 1 else "[" + ", ".join(msgs) + "]"


# ------------------------------------------------------------------------ label selector


@dataclasses.dataclass(frozen=True)
class LabelSelector:
    """A conjunction of :class:`Requirement` s. ``nothing`` marks the selector that matches
    no object (a null ``LabelSelector``)."""

    requirements: tuple[Requirement, ...] = ()
    nothing: bool = False

    @classmethod
    def parse(cls, text: str) -> LabelSelector:
        """Parse the string syntax (see the module docstring)."""
        return _Parser(text or "").parse()

    @classmethod
    def from_dict(cls, selector: Mapping[str, Any] | None) -> LabelSelector:
        """From a ``LabelSelector`` object; None gives :data:`NOTHING`, ``{}``
        :data:`EVERYTHING`. Raises :class:`SelectorError` for an unknown operator
        (``"Foo" is not a valid label selector operator``) or invalid keys and values."""
        if selector is None:
            return NOTHING
        reqs = []
        for key, value in (selector.get("matchLabels") or {}).items():
            reqs.append(Requirement.new(key, "=", [value]))
        for expr in selector.get("matchExpressions") or []:
            op = _DICT_OPS.get(expr.get("operator"))
            if op is None:
                raise SelectorError(f"\"{expr.get('operator')}\" is not a valid label "
                                    "selector operator")
            reqs.append(Requirement.new(expr.get("key") or "", op, expr.get("values") or ()))
        return cls(tuple(sorted(reqs, key=lambda r: r.key)))

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        """True when every requirement holds for ``labels`` (None means no labels)."""
        if self.nothing:
            return False
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    def matches_object(self, obj: dict) -> bool:
        """:meth:`matches` on ``obj.metadata.labels``."""
        return self.matches((obj.get("metadata") or {}).get("labels"))

    def empty(self) -> bool:
        """True when the selector matches everything."""
        return not self.requirements and not self.nothing

    def to_string(self) -> str:
        """The canonical string form; ``""`` for the empty selector."""
        return ",".join(str(r) for r in self.requirements)

    def __str__(self) -> str:
        return self.to_string()

    def requires_exact(self, key: str) -> str | None:
        """The value the selector pins ``key`` to with ``=``/``==``/one-value ``in``, or
        None (useful for indexes)."""
        for r in self.requirements:
            if r.key == key and r.operator in ("=", "==", "in") and len(r.values) == 1:
                return r.values[0]
        return None


EVERYTHING = LabelSelector()
NOTHING = LabelSelector(nothing=True)


def parse_label_selector(text: str) -> LabelSelector:
    """Same as :meth:`LabelSelector.parse`."""
    return LabelSelector.parse(text)


def selector_from_set(labels: Mapping[str, str]) -> LabelSelector:
    """The selector requiring each ``key=value`` (a Service's ``spec.selector``); an empty
    mapping gives :data:`EVERYTHING`. Keys and values are validated."""
    return LabelSelector(tuple(Requirement.new(k, "=", [v]) for k, v in sorted(labels.items())))


def validate_label_selector(selector: Any, path: FieldPath | str) -> list[FieldError]:
    """Field errors of a ``LabelSelector`` object inside an object being validated (Kubernetes'
    ``ValidateLabelSelector``): label syntax of ``matchLabels``, and for each
    ``matchExpressions[i]`` its operator, key, and values as the operator requires."""
    path = path if isinstance(path, FieldPath) else FieldPath(str(path))
    if selector is None:
        return []
    if not isinstance(selector, dict):
        return [FieldError.type_invalid(path, selector, "must be an object")]
    errs = validate_labels(selector.get("matchLabels") or {}, path.child("matchLabels"))
    for i, expr in enumerate(selector.get("matchExpressions") or []):
        p = path.child("matchExpressions").index(i)
        op, values = expr.get("operator"), expr.get("values") or []
        if op in ("In", "NotIn"):
            if not values:
                errs.append(FieldError.required(p.child("values"), "must be specified when "
                                                "`operator` is 'In' or 'NotIn'"))
        elif op in ("Exists", "DoesNotExist"):
            if values:
                errs.append(FieldError.forbidden(p.child("values"), "may not be specified when "
                                                 "`operator` is 'Exists' or 'DoesNotExist'"))
        else:
            errs.append(FieldError.invalid(p.child("operator"), op, "not a valid selector "
                                                                    "operator"))
        key = expr.get("key") or ""
        for msg in is_qualified_name(key):
            errs.append(FieldError.invalid(p.child("key"), key, msg))
        for j, v in enumerate(values):
            for msg in is_valid_label_value(v):
                errs.append(FieldError.invalid(p.child("values").index(j), v, msg))
    return errs


# ------------------------------------------------------------------------- the parser

_SPECIAL = set("=!(),<>")
_SYMBOLS = {"=": "=", "==": "==", "!=": "!=", "!": "!", "(": "(", ")": ")", ",": ",",
            ">": "gt", "<": "lt"}
_END = ("end", "")


class _Parser:
    """Kubernetes' label selector grammar: a lexer of identifiers and symbols, then a
    recursive-descent parser that reports the token it found and what it expected."""

    def __init__(self, text: str):
        self.tokens = self._lex(text)
        self.pos = 0

    @staticmethod
    def _lex(text: str) -> list[tuple[str, str]]:
        tokens, i, n = [], 0, len(text)
        while i < n:
            ch = text[i]
            if ch.isspace():
                i += 1
            elif ch in _SPECIAL:
                j = i
                while j < n and text[j] in _SPECIAL:
                    j += 1
                run = text[i:j]
                # longest known symbol prefix first, as the Kubernetes lexer does
                for size in (2, 1):
                    if run[:size] in _SYMBOLS and len(run) >= size:
                        tokens.append((_SYMBOLS[run[:size]], run[:size]))
                        i += size
                        break
                else:  # pragma: no cover - every single special char is a symbol
                    raise SelectorError(f"error expected: keyword found '{run}'")
            else:
                j = i
                while j < n and not text[j].isspace() and text[j] not in _SPECIAL:
                    j += 1
                word = text[i:j]
                tokens.append(("id", word))
                i = j
        tokens.append(_END)
        return tokens

    def _peek(self, values: bool = True) -> tuple[str, str]:
        return self._classify(self.tokens[self.pos], values)

    def _take(self, values: bool = True) -> tuple[str, str]:
        tok = self._classify(self.tokens[self.pos], values)
        if self.pos < len(self.tokens) - 1:
            self.pos += 1
        return tok

    @staticmethod
    def _classify(tok: tuple[str, str], values: bool) -> tuple[str, str]:
        # "in"/"notin" are operators only where an operator may stand
        if tok[0] == "id" and not values and tok[1] in ("in", "notin"):
            return (tok[1], tok[1])
        return tok

    def parse(self) -> LabelSelector:
        reqs = []
        while True:
            kind, lit = self._peek()
            if kind in ("id", "!"):
                try:
                    reqs.append(self._requirement())
                except SelectorError as exc:
                    raise SelectorError(f"unable to parse requirement: {exc}") from None
                kind, lit = self._take()
                if kind == "end":
                    break
                if kind == ",":
                    nxt, nlit = self._peek()
                    if nxt not in ("id", "!"):
                        raise SelectorError(f"found '{nlit}', expected: identifier after ','")
                    continue
                raise SelectorError(f"found '{lit}', expected: ',' or 'end of string'")
            if kind == "end":
                break
            raise SelectorError(f"found '{lit}', expected: !, identifier, or 'end of string'")
        return LabelSelector(tuple(sorted(reqs, key=lambda r: r.key)))

    def _requirement(self) -> Requirement:
        kind, lit = self._take()
        negated = kind == "!"
        if negated:
            kind, lit = self._take()
        if kind != "id":
            raise SelectorError(f"found '{lit}', expected: identifier")
        key = lit
        msgs = is_qualified_name(key)
        if msgs:
            raise SelectorError(str(FieldError.invalid("", key, "; ".join(msgs))))
        if negated:  # "!key" takes no operator; what follows is the caller's to judge
            return Requirement.new(key, "!")
        nxt, _ = self._peek()
        if nxt in ("end", ","):
            return Requirement.new(key, "exists")
        kind, lit = self._take(values=False)
        if kind not in ("in", "notin", "=", "==", "!=", "gt", "lt"):
            raise SelectorError(f"found '{lit}', expected: in, notin, =, ==, !=, gt, lt")
        op = kind
        if op in ("in", "notin"):
            values = self._value_set()
        else:
            values = self._exact_value()
        return Requirement.new(key, op, values)

    def _exact_value(self) -> list[str]:
        kind, lit = self._peek()
        if kind in ("end", ","):
            return [""]
        kind, lit = self._take()
        if kind == "id":
            return [lit]
        raise SelectorError(f"found '{lit}', expected: identifier")

    def _value_set(self) -> list[str]:
        kind, lit = self._take()
        if kind != "(":
            raise SelectorError(f"found '{lit}' expected: '('")
        kind, lit = self._peek()
        if kind == ")":
            self._take()
            return [""]
        if kind not in ("id", ","):
            raise SelectorError(f"found '{lit}', expected: ',', ')' or identifier")
        values: list[str] = []
        while True:
            kind, lit = self._take()
            if kind == "id":
                values.append(lit)
                nxt, nlit = self._peek()
                if nxt == ",":
                    continue
                if nxt == ")":
                    self._take()
                    return values
                raise SelectorError(f"found '{nlit}', expected: ',' or ')'")
            if kind == ",":
                if not values:
                    values.append("")  # "(,a)": an empty value before the comma
                nxt, _ = self._peek()
                if nxt == ")":
                    values.append("")
                    self._take()
                    return values
                if nxt == ",":
                    self._take()
                    values.append("")
                continue
            raise SelectorError(f"found '{lit}', expected: ',', or identifier")


# ------------------------------------------------------------------------ field selectors


def _pod_fields(obj: dict) -> dict[str, str]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    pod_ip = ""
    if status.get("podIPs"):
        pod_ip = (status["podIPs"][0] or {}).get("ip", "")
    elif status.get("podIP"):
        pod_ip = status["podIP"]
    return {
        "spec.nodeName": spec.get("nodeName") or "",
        "spec.restartPolicy": spec.get("restartPolicy") or "",
        "spec.schedulerName": spec.get("schedulerName") or "",
        "spec.serviceAccountName": spec.get("serviceAccountName") or "",
        "spec.hostNetwork": "true" if spec.get("hostNetwork") else "false",
        "status.phase": status.get("phase") or "",
        "status.podIP": pod_ip,
        "status.nominatedNodeName": status.get("nominatedNodeName") or "",
    }


def _event_fields(obj: dict) -> dict[str, str]:
    # core/v1 names; an events.k8s.io/v1 object is read through its renamed fields
    if (obj.get("apiVersion") or "").startswith("events.k8s.io/"):
        involved = obj.get("regarding") or {}
        source = (obj.get("deprecatedSource") or {}).get("component") or ""
        reporting = obj.get("reportingController") or ""
    else:
        involved = obj.get("involvedObject") or {}
        source = (obj.get("source") or {}).get("component") or ""
        reporting = obj.get("reportingComponent") or ""
    fields = {f"involvedObject.{f}": str(involved.get(f) or "")
              for f in ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion",
                        "fieldPath")}
    fields.update({"reason": obj.get("reason") or "", "reportingComponent": reporting,
                   "source": source, "type": obj.get("type") or ""})
    return fields


def _status_int(obj: dict, field: str) -> str:
    return str(int((obj.get("status") or {}).get(field) or 0))


_FIELDS = {
    "Pod": _pod_fields,
    "Event": _event_fields,
    "Secret": lambda o: {"type": o.get("type") or ""},
    "Node": lambda o: {"spec.unschedulable":
                       "true" if (o.get("spec") or {}).get("unschedulable") else "false"},
    "Namespace": lambda o: {"status.phase": (o.get("status") or {}).get("phase") or ""},
    "ReplicaSet": lambda o: {"status.replicas": _status_int(o, "replicas")},
    "Job": lambda o: {"status.successful": _status_int(o, "succeeded")},
}
_EXTRA = {
    "Pod": ("spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
            "spec.serviceAccountName", "spec.hostNetwork", "status.phase", "status.podIP",
            "status.nominatedNodeName"),
    "Event": ("involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
              "involvedObject.uid", "involvedObject.apiVersion",
              "involvedObject.resourceVersion", "involvedObject.fieldPath", "reason",
              "reportingComponent", "source", "type"),
    "Secret": ("type",),
    "Node": ("spec.unschedulable",),
    "Namespace": ("status.phase",),
    "ReplicaSet": ("status.replicas",),
    "Job": ("status.successful",),
}


def _kind_name(kind: Any) -> str:
    return getattr(kind, "kind", kind) or ""


def supported_fields(kind: Any) -> tuple[str, ...]:
    """The field selector labels a kind supports (``kind`` is a kind name such as ``"Pod"``
    or a :class:`~pilothouse.model.kinds.Kind`)."""
    return ("metadata.name", "metadata.namespace") + _EXTRA.get(_kind_name(kind), ())


def field_set(kind: Any, obj: dict) -> dict[str, str]:
    """The values of every supported field of ``obj``, as strings (booleans ``true`` /
    ``false``, counts in decimal, missing fields ``""``)."""
    meta = obj.get("metadata") or {}
    out = {"metadata.name": meta.get("name") or "",
           "metadata.namespace": meta.get("namespace") or ""}
    extra = _FIELDS.get(_kind_name(kind))
    if extra:
        out.update(extra(obj))
    return out


@dataclasses.dataclass(frozen=True)
class FieldTerm:
    """``field`` equals (``op`` ``=``) or differs from (``!=``) ``value``."""

    field: str
    op: str
    value: str

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")
        return f"{self.field}{self.op}{escaped}"


@dataclasses.dataclass(frozen=True)
class FieldSelector:
    """A conjunction of :class:`FieldTerm` s; empty matches everything."""

    terms: tuple[FieldTerm, ...] = ()

    @classmethod
    def parse(cls, text: str) -> FieldSelector:
        """Parse ``k=v,k2!=v2``; raises :class:`SelectorError` (``invalid selector: '<s>';
        can't understand '<term>'``) for a term without an operator and for bad escapes."""
        terms = []
        for part in sorted(_split_terms(text or "")):
            if not part:
                continue
            split = _split_term(part)
            if split is None:
                raise SelectorError(f"invalid selector: '{text}'; can't understand '{part}'")
            lhs, op, rhs = split
            terms.append(FieldTerm(lhs, "!=" if op == "!=" else "=", _unescape(rhs)))
        return cls(tuple(terms))

    def check(self, kind: Any) -> None:
        """Raise :class:`SelectorError` ``field label not supported: <field>`` when a term
        names a field ``kind`` does not support."""
        allowed = supported_fields(kind)
        for term in self.terms:
            if term.field not in allowed:
                raise SelectorError(f"field label not supported: {term.field}")

    def matches(self, obj: dict, kind: Any = None) -> bool:
        """True when every term holds for ``obj``. ``kind`` defaults to ``obj["kind"]``;
        unsupported fields raise as in :meth:`check`."""
        kind = kind or obj.get("kind") or ""
        self.check(kind)
        fields = field_set(kind, obj)
        for term in self.terms:
            equal = fields.get(term.field, "") == term.value
            if equal != (term.op == "="):
                return False
        return True

    def empty(self) -> bool:
        return not self.terms

    def requires_exact(self, field: str) -> str | None:
        """The value the selector pins ``field`` to with ``=``, or None."""
        for term in self.terms:
            if term.field == field and term.op == "=":
                return term.value
        return None

    def to_string(self) -> str:
        return ",".join(str(t) for t in self.terms)

    def __str__(self) -> str:
        return self.to_string()


def parse_field_selector(text: str) -> FieldSelector:
    """Same as :meth:`FieldSelector.parse`."""
    return FieldSelector.parse(text)


def _split_terms(text: str) -> list[str]:
    terms, current, escaped = [], [], False
    for ch in text:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\":
            current.append(ch)
            escaped = True
        elif ch == ",":
            terms.append("".join(current))
            current = []
        else:
            current.append(ch)
    terms.append("".join(current))
    return terms


def _split_term(term: str) -> tuple[str, str, str] | None:
    escaped = False
    for i, ch in enumerate(term):
        if escaped:
            escaped = False
            continue
        if ch == "\\":
            escaped = True
            continue
        for op in ("!=", "==", "="):
            if term.startswith(op, i):
                return term[:i], op, term[i + len(op):]
    return None


def _unescape(value: str) -> str:
    out, escaped = [], False
    for ch in value:
        if escaped:
            if ch not in "\\,=":
                raise SelectorError(f"invalid field selector: invalid escape sequence: \\{ch}")
            out.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch in ",=":
            raise SelectorError(f"invalid field selector: unescaped character in value: {ch}")
        else:
            out.append(ch)
    if escaped:
        raise SelectorError("invalid field selector: invalid escape sequence: \\")
    return "".join(out)
