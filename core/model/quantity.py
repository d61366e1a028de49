"""Kubernetes resource quantities (``500m``, ``128Mi``, ``1.5Gi``, ``1e3``) with exact arithmetic.

A :class:`Quantity` is a number with a *format family* that decides how it prints:

* ``DecimalSI``: no suffix or one of ``n u m k M G T P E`` (10^-9 … 10^18);
* ``BinarySI``: ``Ki Mi Gi Ti Pi Ei`` (2^10 … 2^60);
* ``DecimalExponent``: ``e<int>`` or ``E<int>`` (``1e3``, ``5E-3``).

Parsing follows Kubernetes: the grammar is
``^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$`` (one decimal point at most, ``1.G`` is
accepted), non-zero values are rounded away from zero to a multiple of 10^-9 (a request
for some resource never becomes none), a ``BinarySI`` value above 2^63-1 is capped there and
a ``BinarySI`` value strictly between 0 and 1 becomes ``DecimalSI``.

The value is kept as an integer count of nano units, so arithmetic is exact (never a
float). ``str()`` is Kubernetes' canonical form, which keeps the format family:

* decimal families: the largest exponent that is a multiple of 3 with an integer mantissa
  (``1500m`` → ``1500m``, ``0.5`` → ``500m``, ``1000`` → ``1k``, ``1.5e3`` → ``1500``);
* ``BinarySI``: the largest power of 1024 with an integer mantissa (``1024Mi`` → ``1Gi``,
  ``1.5Gi`` → ``1536Mi``); values between -1024 and 1024, or with a fractional part, print
  as ``DecimalSI`` instead.

Sums and differences keep the left operand's family (the right one's when the left is
zero), as Kubernetes' ``Add`` and ``Sub`` do.

Since 0.1.
"""

from __future__ import annotations

import decimal
import enum
import fractions
import re
from typing import Any

__all__ = ["QUANTITY_REGEX", "Quantity", "QuantityError", "QuantityFormat", "parse_quantity"]

_NANO = 10**9
_MAX_INT64 = 2**63 - 1
_MAX_EXPONENT = 1000  # refuse absurd exponents (1e999999999) instead of computing them
#: The grammar of a quantity, as Kubernetes states it in its error message.
QUANTITY_REGEX = r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"


class QuantityError(ValueError):
    """A string is not a quantity. The message is Kubernetes' for the same input."""


_FORMAT_WRONG = f"quantities must match the regular expression '{QUANTITY_REGEX}'"
_NUMERIC = "unable to parse numeric part of quantity"
_SUFFIX = "unable to parse quantity's suffix"


class QuantityFormat(str, enum.Enum):
    """How a quantity prints (see the module docstring)."""

    DECIMAL_SI = "DecimalSI"
    BINARY_SI = "BinarySI"
    DECIMAL_EXPONENT = "DecimalExponent"


_DEC_SUFFIXES = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15,
                 "E": 18}
_DEC_BY_EXP = {v: k for k, v in _DEC_SUFFIXES.items()}
_BIN_SUFFIXES = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_BIN_BY_POWER = {v // 10: k for k, v in _BIN_SUFFIXES.items()}
_NUMBER = re.compile(r"([+-]?)([0-9]*)(?:\.([0-9]*))?")
_SUFFIX_RE = re.compile(r"[eEinumkKMGTP]*[-+]?[0-9]*")


def _interpret_suffix(suffix: str) -> tuple[int, int, QuantityFormat]:
    """suffix → (base, exponent, format)."""
    if suffix in _DEC_SUFFIXES:
        return 10, _DEC_SUFFIXES[suffix], QuantityFormat.DECIMAL_SI
    if suffix in _BIN_SUFFIXES:
        return 2, _BIN_SUFFIXES[suffix], QuantityFormat.BINARY_SI
    if len(suffix) > 1 and suffix[0] in "eE" and re.fullmatch(r"[-+]?[0-9]+", suffix[1:]):
        exponent = int(suffix[1:])
        if abs(exponent) > _MAX_EXPONENT:
            raise QuantityError(f"quantity exponent {exponent} is out of range")
        return 10, exponent, QuantityFormat.DECIMAL_EXPONENT
    raise QuantityError(_SUFFIX)


def _round_away(num: int, den: int) -> int:
    """num/den rounded away from zero to an integer."""
    q, r = divmod(abs(num), den)
    if r:
        q += 1
    return -q if num < 0 else q


def _parse(text: str) -> tuple[int, QuantityFormat]:
    if not isinstance(text, str):
        raise TypeError(f"a quantity is parsed from a string, not {type(text).__name__}")
    s = text
    if not s:
        raise QuantityError(_FORMAT_WRONG)
    m = _NUMBER.match(s)
    sign, whole, frac = m.group(1), m.group(2), m.group(3)
    suffix = s[m.end():]
    if not _SUFFIX_RE.fullmatch(suffix):
        raise QuantityError(_FORMAT_WRONG)
    if not whole and not frac:
        # "", ".", "-", "+Ki": no digit at all.
        raise QuantityError(_NUMERIC if m.end() > len(sign) or suffix else _FORMAT_WRONG)
    base, exponent, fmt = _interpret_suffix(suffix)
    frac = frac or ""
    mantissa = int((whole or "0") + frac)
    # value = mantissa * 10^-len(frac) * base^exponent, as a fraction num/den
    num, den = mantissa, 10 ** len(frac)
    if base == 10:
        if exponent >= 0:
            num *= 10**exponent
        else:
            den *= 10**-exponent
    else:
        num *= 2**exponent
    nanos = _round_away(num * _NANO, den)
    if fmt is QuantityFormat.BINARY_SI:
        if nanos > _MAX_INT64 * _NANO:
            nanos = _MAX_INT64 * _NANO
        if 0 < nanos < _NANO:
            fmt = QuantityFormat.DECIMAL_SI
    return (-nanos if sign == "-" else nanos), fmt


def _remove_factors(value: int, factor: int) -> tuple[int, int]:
    times = 0
    while value and value % factor == 0:
        value //= factor
        times += 1
    return value, times


class Quantity:
    """An exact quantity. Construct from a string (``Quantity("1.5Gi")``), an int, a float
    (through its shortest text, so ``0.1`` is exactly one tenth), a
    :class:`~fractions.Fraction` or :class:`~decimal.Decimal`, or another Quantity.
    Non-string numbers take ``DecimalSI`` unless ``format`` says otherwise.

    Immutable and hashable; equality and ordering compare values only (``Quantity("1Gi")
    == Quantity("1024Mi")`` and ``Quantity("1k") == Quantity("1e3")``). Arithmetic and
    comparisons also accept strings and numbers, which are converted first.
    """

    __slots__ = ("_nanos", "_format")

    def __init__(self, value: Any = 0, format: QuantityFormat | str | None = None):
        if isinstance(value, Quantity):
            nanos, fmt = value._nanos, value._format
        elif isinstance(value, str):
            nanos, fmt = _parse(value)
        elif isinstance(value, bool):
            raise TypeError("a bool is not a quantity")
        elif isinstance(value, int):
            nanos, fmt = value * _NANO, QuantityFormat.DECIMAL_SI
        elif isinstance(value, float):
            nanos, fmt = _parse(repr(value))
            fmt = QuantityFormat.DECIMAL_SI if fmt is QuantityFormat.DECIMAL_EXPONENT else fmt
        elif isinstance(value, (fractions.Fraction, decimal.Decimal)):
            if isinstance(value, decimal.Decimal) and not value.is_finite():
                raise QuantityError(_NUMERIC)
            frac = fractions.Fraction(value) * _NANO
            nanos, fmt = _round_away(frac.numerator, frac.denominator), QuantityFormat.DECIMAL_SI
        else:
            raise TypeError(f"cannot make a quantity from {type(value).__name__}")
        self._nanos = nanos
        self._format = QuantityFormat(format) if format is not None else fmt

    @classmethod
    def _of(cls, nanos: int, fmt: QuantityFormat) -> Quantity:
        q = cls.__new__(cls)
        q._nanos, q._format = nanos, fmt
        return q

    # ---------------------------------------------------------------- views of the value

    @property
    def format(self) -> QuantityFormat:
        """The format family the quantity prints in."""
        return self._format

    @property
    def nanos(self) -> int:
        """The exact value in units of 10^-9."""
        return self._nanos

    def to_fraction(self) -> fractions.Fraction:
        """The exact value."""
        return fractions.Fraction(self._nanos, _NANO)

    def to_decimal(self) -> decimal.Decimal:
        """The exact value as a Decimal."""
        return decimal.Decimal(self._nanos).scaleb(-9)

    def scaled_value(self, scale: int) -> int:
        """The value in units of 10^scale, rounded away from zero (Kubernetes'
        ``ScaledValue``): ``scaled_value(-3)`` is :meth:`milli_value`."""
        exp = scale + 9
        if exp <= 0:
            return self._nanos * 10**-exp
        return _round_away(self._nanos, 10**exp)

    def value(self) -> int:
        """The value rounded away from zero to an integer (``1500m`` → 2, ``-1500m`` → -2)."""
        return self.scaled_value(0)

    def milli_value(self) -> int:
        """The value in thousandths, rounded away from zero (``1n`` → 1, ``1.5`` → 1500)."""
        return self.scaled_value(-3)

    def is_zero(self) -> bool:
        return self._nanos == 0

    def sign(self) -> int:
        """-1, 0 or 1."""
        return (self._nanos > 0) - (self._nanos < 0)

    # ------------------------------------------------------------------------ formatting

    def canonical(self) -> tuple[str, str]:
        """(number, suffix) of the canonical form, e.g. ``("1536", "Mi")``."""
        if self._nanos == 0:
            return "0", ""
        fmt = self._format
        if fmt is QuantityFormat.BINARY_SI:
            if -1024 * _NANO < self._nanos < 1024 * _NANO or self._nanos % _NANO:
                fmt = QuantityFormat.DECIMAL_SI
            else:
                mantissa, times = _remove_factors(self._nanos // _NANO, 1024)
                if times > 6:
                    mantissa, times = mantissa * 1024 ** (times - 6), 6
                return str(mantissa), _BIN_BY_POWER.get(times, "")
        mantissa, exponent = _remove_factors(self._nanos, 10)
        exponent -= 9
        shift = exponent % 3
        mantissa, exponent = mantissa * 10**shift, exponent - shift
        if fmt is QuantityFormat.DECIMAL_EXPONENT:
            return str(mantissa), (f"e{exponent}" if exponent else "")
        if exponent > 18:
            mantissa, exponent = mantissa * 10 ** (exponent - 18), 18
        return str(mantissa), _DEC_BY_EXP[exponent]

    def __str__(self) -> str:
        number, suffix = self.canonical()
        return number + suffix

    def __repr__(self) -> str:
        return f"Quantity({str(self)!r})"

    def to_json(self) -> str:
        """The canonical string, as the API serializes quantities."""
        return str(self)

    # ------------------------------------------------------------------------ arithmetic

    @staticmethod
    def _coerce(other: Any) -> Quantity | None:
        if isinstance(other, Quantity):
            return other
        if isinstance(other, (str, int, float, fractions.Fraction, decimal.Decimal)) and \
                not isinstance(other, bool):
            return Quantity(other)
        return None

    def _combine(self, other: Quantity, nanos: int) -> Quantity:
        return Quantity._of(nanos, other._format if self._nanos == 0 else self._format)

    def __add__(self, other: Any) -> Quantity:
        o = self._coerce(other)
        if o is None:
            return NotImplemented
        return self._combine(o, self._nanos + o._nanos)

    def __radd__(self, other: Any) -> Quantity:
        o = self._coerce(other)
        if o is None:
            return NotImplemented
        return o + self

    def __sub__(self, other: Any) -> Quantity:
        o = self._coerce(other)
        if o is None:
            return NotImplemented
        return self._combine(o, self._nanos - o._nanos)

    def __rsub__(self, other: Any) -> Quantity:
        o = self._coerce(other)
        if o is None:
            return NotImplemented
        return o - self

    def __mul__(self, other: Any) -> Quantity:
        if isinstance(other, int) and not isinstance(other, bool):
            return Quantity._of(self._nanos * other, self._format)
        return NotImplemented

    __rmul__ = __mul__

    def __neg__(self) -> Quantity:
        return Quantity._of(-self._nanos, self._format)

    def __pos__(self) -> Quantity:
        return self

    def __abs__(self) -> Quantity:
        return Quantity._of(abs(self._nanos), self._format)

    def __bool__(self) -> bool:
        return self._nanos != 0

    # ------------------------------------------------------------------------ comparison

    def cmp(self, other: Any) -> int:
        """-1, 0 or 1 as Kubernetes' ``Cmp``."""
        o = self._coerce(other)
        if o is None:
            raise TypeError(f"cannot compare a quantity with {type(other).__name__}")
        return (self._nanos > o._nanos) - (self._nanos < o._nanos)

    def __eq__(self, other: object) -> bool:
        try:
            o = self._coerce(other)
        except QuantityError:
            return False
        if o is None:
            return NotImplemented
        return self._nanos == o._nanos

    def __hash__(self) -> int:
        return hash(self.to_fraction())

    def __lt__(self, other: Any) -> bool:
        o = self._coerce(other)
        return NotImplemented if o is None else self._nanos < o._nanos

    def __le__(self, other: Any) -> bool:
        o = self._coerce(other)
        return NotImplemented if o is None else self._nanos <= o._nanos

    def __gt__(self, other: Any) -> bool:
        o = self._coerce(other)
        return NotImplemented if o is None else self._nanos > o._nanos

    def __ge__(self, other: Any) -> bool:
        o = self._coerce(other)
        return NotImplemented if o is None else self._nanos >= o._nanos


def parse_quantity(value: Any) -> Quantity:
    """Parse a quantity as it appears in an object (a string, or a JSON number); raises
    :class:`QuantityError` with Kubernetes' message when it is not one."""
    if isinstance(value, Quantity):
        return value
    try:
        return Quantity(value)
    except TypeError as exc:
        raise QuantityError(_FORMAT_WRONG) from exc
