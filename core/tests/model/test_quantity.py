"""Tests of pilothouse.model.quantity: parsing, canonical form, exact arithmetic."""

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings, strategies as st

from pilothouse.model.quantity import Quantity, QuantityError, QuantityFormat, parse_quantity

Q = Quantity


@pytest.mark.parametrize("text, canonical, fmt", [
    ("500m", "500m", "DecimalSI"),
    ("128Mi", "128Mi", "BinarySI"),
    ("1.5Gi", "1536Mi", "BinarySI"),
    ("1e3", "1e3", "DecimalExponent"),
    ("1E3", "1e3", "DecimalExponent"),
    ("1.5e3", "1500", "DecimalExponent"),
    ("12e6", "12e6", "DecimalExponent"),
    ("2k", "2k", "DecimalSI"),
    ("0.1", "100m", "DecimalSI"),
    ("1500m", "1500m", "DecimalSI"),
    ("0.5", "500m", "DecimalSI"),
    ("1024Mi", "1Gi", "BinarySI"),
    ("2048Ki", "2Mi", "BinarySI"),
    ("1500Ki", "1500Ki", "BinarySI"),
    ("0.5Gi", "512Mi", "BinarySI"),
    ("0.5Ki", "512", "BinarySI"),       # below 1024 prints as DecimalSI
    ("1000", "1k", "DecimalSI"),
    ("1200", "1200", "DecimalSI"),
    ("1n", "1n", "DecimalSI"),
    ("1u", "1u", "DecimalSI"),
    ("1E", "1E", "DecimalSI"),
    ("10E", "10E", "DecimalSI"),
    ("1.G", "1G", "DecimalSI"),
    ("007", "7", "DecimalSI"),
    ("+5", "5", "DecimalSI"),
    ("-500m", "-500m", "DecimalSI"),
    ("-1.5Gi", "-1536Mi", "BinarySI"),
    ("0", "0", "DecimalSI"),
    ("0Mi", "0", "BinarySI"),
    ("1e-3", "1e-3", "DecimalExponent"),
    ("1e+3", "1e3", "DecimalExponent"),
    ("0.1n", "1n", "DecimalSI"),        # rounded up to the smallest unit
    ("1.0000000001", "1000000001n", "DecimalSI"),
    ("16Ei", "9223372036854775807", "BinarySI"),   # BinarySI is capped at 2^63-1
    ("0.3Ki", "307200m", "BinarySI"),
])
def test_parse_and_canonical(text, canonical, fmt):
    q = Q(text)
    assert str(q) == canonical
    assert q.format == QuantityFormat(fmt)
    assert Q(str(q)) == q


@pytest.mark.parametrize("text, message", [
    ("", "quantities must match the regular expression"),
    ("abc", "quantities must match the regular expression"),
    (" 1", "quantities must match the regular expression"),
    ("1x", "quantities must match the regular expression"),
    ("1.5.5", "quantities must match the regular expression"),
    ("1K", "unable to parse quantity's suffix"),
    ("1e", "unable to parse quantity's suffix"),
    ("1ee3", "unable to parse quantity's suffix"),
    ("1Mi3", "unable to parse quantity's suffix"),
    (".", "unable to parse numeric part of quantity"),
    ("Ki", "unable to parse numeric part of quantity"),
    ("-", "quantities must match the regular expression"),
    ("1e99999", "out of range"),
])
def test_invalid(text, message):
    with pytest.raises(QuantityError, match=message.replace("(", r"\(")):
        Q(text)


def test_quantity_error_is_value_error():
    with pytest.raises(ValueError):
        parse_quantity("nope")
    with pytest.raises(QuantityError):
        parse_quantity([1])


def test_values_round_away_from_zero():
    assert Q("1500m").value() == 2
    assert Q("-1500m").value() == -2
    assert Q("1n").milli_value() == 1
    assert Q("-1n").milli_value() == -1
    assert Q("1.5").milli_value() == 1500
    assert Q("1Gi").value() == 2**30
    assert Q("2k").scaled_value(3) == 2
    assert Q("2500").scaled_value(3) == 3
    assert Q("1").scaled_value(-9) == 10**9
    assert Q("0").value() == 0


def test_numbers_and_exact_types():
    assert Q(2) == Q("2")
    assert str(Q(0.1)) == "100m"           # float through its text, not binary value
    assert str(Q(1e16)) == "10P" and Q(1e16).format == QuantityFormat.DECIMAL_SI
    assert Q(Fraction(1, 3)).nanos == 333333334
    assert str(Q(Decimal("0.25"))) == "250m"
    assert parse_quantity(3) == Q("3")
    with pytest.raises(TypeError):
        Q(True)
    with pytest.raises(TypeError):
        Q(object())
    assert str(Q(1024, format="BinarySI")) == "1Ki"


def test_arithmetic_keeps_format_of_left_operand():
    assert str(Q("1Gi") + Q("512Mi")) == "1536Mi"
    assert str(Q("1") + Q("500m")) == "1500m"
    assert (Q("0") + Q("1Mi")).format == QuantityFormat.BINARY_SI   # zero takes the other's
    assert str(Q("1Gi") - Q("1Gi")) == "0"
    assert str(Q("100m") - Q("1")) == "-900m"
    assert str(Q("1k") + "1") == "1001"
    assert str(3 * Q("100m")) == "300m"
    assert str(-Q("1Ki")) == "-1Ki" and str(abs(Q("-1Ki"))) == "1Ki"
    assert sum([Q("100m"), Q("200m")], Q(0)) == Q("300m")


def test_comparison_and_equality():
    assert Q("1Gi") == Q("1024Mi") == "1073741824"
    assert Q("1k") == Q("1e3")
    assert Q("999m") < Q("1") <= Q("1000m") < Q("1001m")
    assert Q("1Mi") > "1M"
    assert Q("1").cmp("2") == -1 and Q("2").cmp(Q("2")) == 0 and Q("3").cmp(1) == 1
    assert Q("1") == 1 and hash(Q("1")) == hash(1)
    assert len({Q("1Gi"), Q("1024Mi")}) == 1
    assert Q("1") != "not a quantity"
    assert not Q("0") and Q("1n")
    with pytest.raises(TypeError):
        Q("1").cmp(object())
    with pytest.raises(TypeError):
        Q("1") < object()  # noqa: B015


# --------------------------------------------------------------------- property tests

_decimal_suffixes = st.sampled_from(["n", "u", "m", "", "k", "M", "G", "T", "P", "E"])
_binary_suffixes = st.sampled_from(["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"])


@st.composite
def quantity_text(draw):
    sign = draw(st.sampled_from(["", "-", "+"]))
    whole = str(draw(st.integers(0, 10**6)))
    frac = draw(st.one_of(st.just(""), st.text("0123456789", min_size=1, max_size=9)))
    number = whole + ("." + frac if frac else "")
    kind = draw(st.sampled_from(["dec", "bin", "exp"]))
    if kind == "dec":
        suffix = draw(_decimal_suffixes)
    elif kind == "bin":
        suffix = draw(_binary_suffixes)
    else:
        suffix = draw(st.sampled_from(["e", "E"])) + str(draw(st.integers(-9, 12)))
    return sign + number + suffix


_EXP = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_BIN = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}


def _exact(text):
    """The exact value of a generated quantity text, before rounding to nano units."""
    import re
    m = re.fullmatch(r"([+-]?[0-9.]+)(.*)", text)
    number, suffix = Fraction(Decimal(m.group(1))), m.group(2)
    if suffix in _EXP:
        return number * Fraction(10) ** _EXP[suffix]
    if suffix in _BIN:
        return number * 2 ** _BIN[suffix]
    return number * Fraction(10) ** int(suffix[1:])


@settings(database=None)
@given(quantity_text())
def test_round_trip_canonical(text):
    q = Q(text)
    canonical = str(q)
    again = Q(canonical)
    assert again == q
    assert str(again) == canonical           # canonical form is a fixed point
    # the family survives where the text shows it: BinarySI values below 1024 or with a
    # fraction print as DecimalSI, and a zero exponent prints no "e0"
    shows_family = {QuantityFormat.BINARY_SI: canonical[-1:] == "i",
                    QuantityFormat.DECIMAL_EXPONENT: "e" in canonical,
                    QuantityFormat.DECIMAL_SI: True}[q.format]
    assert again.format == (q.format if shows_family else QuantityFormat.DECIMAL_SI)


@settings(database=None)
@given(quantity_text())
def test_parse_is_exact_up_to_nano_round_up(text):
    q = Q(text)
    exact = _exact(text)
    if q.format == QuantityFormat.BINARY_SI and abs(exact) > 2**63 - 1:
        assert abs(q.value()) == 2**63 - 1  # the magnitude is capped, as in Kubernetes
        return
    value = q.to_fraction()
    assert abs(value) >= abs(exact)
    assert abs(value) - abs(exact) < Fraction(1, 10**9)
    assert (value * 10**9).denominator == 1


@settings(database=None)
@given(quantity_text(), quantity_text())
def test_arithmetic_is_exact(a, b):
    qa, qb = Q(a), Q(b)
    assert (qa + qb).to_fraction() == qa.to_fraction() + qb.to_fraction()
    assert (qa - qb).to_fraction() == qa.to_fraction() - qb.to_fraction()
    assert (qa < qb) == (qa.to_fraction() < qb.to_fraction())
    assert (qa == qb) == (qa.to_fraction() == qb.to_fraction())
    if abs((qa + qb).to_fraction()) <= 2**63 - 1:   # beyond that BinarySI text is capped
        assert Q(str(qa + qb)) == qa + qb


@settings(database=None)
@given(quantity_text())
def test_milli_value_is_ceiling_away_from_zero(text):
    q = Q(text)
    f = q.to_fraction() * 1000
    m = q.milli_value()
    assert abs(m) >= abs(f) and abs(m) - abs(f) < 1
