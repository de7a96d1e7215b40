"""Prices, money and rates: the ladder, exact parsing and formatting, lay liability."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange.units import (
    INVALID,
    PRICES,
    TICK,
    format_money,
    format_price,
    format_rate,
    lay_liability,
    parse_fixed,
)

CI = settings(derandomize=True, database=None, deadline=None)

# DESIGN.md's bands as decimal text: (from, to, step). Each band starts one step above "from",
# except the first, which starts at 1.01.
BANDS = [
    ("1.00", "2", "0.01"), ("2", "3", "0.02"), ("3", "4", "0.05"), ("4", "6", "0.1"),
    ("6", "10", "0.2"), ("10", "20", "0.5"), ("20", "30", "1"), ("30", "50", "2"),
    ("50", "100", "5"), ("100", "1000", "10"),
]


def ladder_from_design() -> list[Decimal]:
    out = []
    for lo, hi, step in BANDS:
        p = Decimal(lo) + Decimal(step)
        while p <= Decimal(hi):
            out.append(p)
            p += Decimal(step)
    return out


# ---------------------------------------------------------------------------- the ladder


def test_the_ladder_has_350_prices_from_1_01_to_1000() -> None:
    assert len(PRICES) == 350 == len(set(PRICES))
    assert (PRICES[0], PRICES[-1]) == (101, 100000)
    assert list(PRICES) == sorted(PRICES)


def test_the_ladder_is_the_design_bands() -> None:
    assert [Decimal(p) / 100 for p in PRICES] == ladder_from_design()


@pytest.mark.parametrize(
    "lo, hi, step",
    [(101, 200, 1), (200, 300, 2), (300, 400, 5), (400, 600, 10), (600, 1000, 20),
     (1000, 2000, 50), (2000, 3000, 100), (3000, 5000, 200), (5000, 10000, 500),
     (10000, 100000, 1000)],
)
def test_each_band_steps_evenly(lo: int, hi: int, step: int) -> None:
    band = [p for p in PRICES if lo <= p <= hi]
    assert band[0] == lo and band[-1] == hi
    assert all(b - a == step for a, b in zip(band, band[1:]))


def test_tick_indexes_the_ladder() -> None:
    assert len(TICK) == 350
    assert all(PRICES[TICK[p]] == p for p in PRICES)


@settings(CI, max_examples=300)
@given(st.integers(-10, 200_000))
def test_nothing_off_the_ladder_is_a_price(p: int) -> None:
    on = (p in TICK)
    assert on == (Decimal(p) / 100 in ladder_from_design())


@pytest.mark.parametrize(
    "text", ["1", "1.00", "0.99", "1.001", "2.01", "2.03", "3.02", "4.05", "6.1", "10.2", "20.5",
             "31", "52", "105", "1001", "1010", "0", "-2"],
)
def test_off_ladder_text_is_not_a_ladder_price(text: str) -> None:
    assert parse_fixed(text, 2) not in TICK


@pytest.mark.parametrize(
    "text, hundredths",
    [("1.01", 101), ("2", 200), ("2.02", 202), ("3.05", 305), ("4.1", 410), ("6.2", 620),
     ("10.5", 1050), ("21", 2100), ("32", 3200), ("55", 5500), ("110", 11000), ("1000", 100000)],
)
def test_band_edges_are_on_the_ladder(text: str, hundredths: int) -> None:
    assert parse_fixed(text, 2) == hundredths and hundredths in TICK


# ---------------------------------------------------------------------------- parse and format


def test_every_ladder_price_round_trips() -> None:
    for p in PRICES:
        text = format_price(p)
        assert parse_fixed(text, 2) == p
        assert Decimal(text) == Decimal(p) / 100
        assert not text.endswith(".") and (text == "0" or "." not in text or text[-1] != "0")
        assert parse_fixed(Decimal(text), 2) == p


@settings(CI, max_examples=500)
@given(st.integers(-(10**15), 10**15))
def test_money_round_trips(pence: int) -> None:
    text = format_money(pence)
    whole, _, frac = text.lstrip("-").partition(".")
    assert len(frac) == 2 and whole.isdigit()
    assert Fraction(Decimal(text)) == Fraction(pence, 100)
    assert parse_fixed(text, 2) == pence
    assert parse_fixed(Decimal(text), 2) == pence


@pytest.mark.parametrize(
    "pence, text",
    [(0, "0.00"), (1, "0.01"), (5, "0.05"), (-5, "-0.05"), (100, "1.00"), (1000, "10.00"),
     (-150, "-1.50"), (123456789, "1234567.89")],
)
def test_money_text(pence: int, text: str) -> None:
    assert format_money(pence) == text


@settings(CI, max_examples=300)
@given(st.integers(0, 10000))
def test_rates_round_trip(bp: int) -> None:
    text = format_rate(bp)
    assert Fraction(Decimal(text)) == Fraction(bp, 100)
    assert parse_fixed(text, 2) == bp


@pytest.mark.parametrize("bp, text", [(500, "5"), (250, "2.5"), (0, "0"), (10000, "100"),
                                      (1, "0.01"), (1010, "10.1")])
def test_rate_text(bp: int, text: str) -> None:
    assert format_rate(bp) == text


@pytest.mark.parametrize(
    "value, expected",
    [
        ("2.1", 210), ("2.10", 210), ("2.100000", 210), (" 2.1 ", 210), ("+2.1", 210),
        ("-2.1", -210), ("02.10", 210), (".5", 50), ("0", 0), ("-0", 0),
        (2, 200), (0, 0), (-3, -300), (Decimal("2.10"), 210), (Decimal("1E+1"), 1000),
        (Decimal("-0.01"), -1), (Decimal("0E-9"), 0), (2.1, 210), (0.1, 10), (1000.0, 100000),
        ("00000000000000000000000000000000000001", 100),
    ],
)
def test_parse_exact(value: object, expected: int) -> None:
    assert parse_fixed(value, 2) == expected


@pytest.mark.parametrize(
    "value",
    ["2.105", "1.001", "0.001", "-0.005", Decimal("2.105"), Decimal("1E-3"), 2.105, 1e-05,
     1e16, "0." + "0" * 100 + "1", "9" * 31, "9" * 5000, Decimal("1E+999999999"),
     Decimal("1E-999999999"), 10**40 * 1.0],
)
def test_parse_invalid(value: object) -> None:
    """A number, but not one that can be represented: never rounded, never an error."""
    assert parse_fixed(value, 2) == INVALID


@pytest.mark.parametrize(
    "value",
    ["abc", "", " ", ".", "-", "+", "1e2", "1E2", "1,5", "1_000", "0x10", "NaN", "nan", "inf",
     "-Infinity", "٣", "２", "1.2.3", "--1", "+-1", "1 2", None, True, False, [1], {"a": 1},
     b"2", float("nan"), float("inf"), Decimal("NaN"), Decimal("-Infinity"), Decimal("sNaN"),
     Fraction(1, 2)],
)
def test_parse_not_a_number(value: object) -> None:
    assert parse_fixed(value, 2) is None


def test_parse_scales() -> None:
    assert parse_fixed("2.5", 0) == INVALID
    assert parse_fixed("25", 0) == 25
    assert parse_fixed("2.5", 3) == 2500
    assert parse_fixed("1000", 2) == 100000 and parse_fixed("10.00", 2) == 1000
    assert parse_fixed("5", 2) == 500 and parse_fixed("2.5", 2) == 250
    assert parse_fixed("0.125", 2) == INVALID


@settings(CI, max_examples=500)
@given(st.decimals(allow_nan=False, allow_infinity=False, places=4,
                   min_value=-(10**12), max_value=10**12))
def test_parse_agrees_with_decimal_arithmetic(d: Decimal) -> None:
    """Exact where the value has at most two places, INVALID where it has more; the same for
    the number, its text and (where exact) the float."""
    scaled = d * 100
    expected = int(scaled) if scaled == scaled.to_integral_value() else INVALID
    assert parse_fixed(d, 2) == expected
    assert parse_fixed(str(d), 2) == expected
    assert parse_fixed(format(d, "f"), 2) == expected
    f = float(d)
    if Decimal(repr(f)) == d and "e" not in repr(f):
        assert parse_fixed(f, 2) == expected


# ---------------------------------------------------------------------------- lay liability


@pytest.mark.parametrize(
    "stake, price, liability",
    [(1000, 300, 2000), (1000, 210, 1100), (33, 150, 16), (1, 101, 0), (99, 101, 0),
     (100, 101, 1), (333, 133, 109), (1000, 100000, 999000), (0, 500, 0), (7, 105, 0)],
)
def test_lay_liability_examples(stake: int, price: int, liability: int) -> None:
    assert lay_liability(stake, price) == liability


@settings(CI, max_examples=500)
@given(st.integers(0, 10**12), st.sampled_from(PRICES))
def test_lay_liability_rounds_down(stake: int, price: int) -> None:
    exact = Fraction(stake * (price - 100), 100)
    got = lay_liability(stake, price)
    assert got <= exact < got + 1
    # never more for less, and additive up to a penny of rounding per part
    assert lay_liability(stake + 1, price) >= got
    half = stake // 2
    parts = lay_liability(half, price) + lay_liability(stake - half, price)
    assert got - 1 <= parts <= got
