"""Prices, money and rates as exact integers, and their public decimal text.

The core never sees a float. Public formats carry decimal strings ("2.1", "10.00"); this module
is the one place that turns them into integers and back:

- a price is an integer number of hundredths of decimal odds: "2.1" -> 210, "1000" -> 100000;
  valid prices are the 350 steps of the Betfair ladder (``PRICES``);
- money is an integer number of pence: "10.00" -> 1000;
- a commission rate is an integer number of basis points (hundredths of a percent): "5" -> 500.

Parsing is exact: text that names a value between two representable values is refused, never
rounded. Parsers return ``None`` for text that is not a number at all and ``INVALID`` (-1) for
a well-formed number that cannot be represented, so callers can tell "malformed" from "invalid
price" when they report.
"""

from __future__ import annotations

from decimal import Decimal

INVALID = -1
"""Stands for a well-formed decimal that cannot be represented at the required precision."""

_BANDS = (
    # (from, to inclusive, step) in hundredths
    (101, 200, 1),
    (202, 300, 2),
    (305, 400, 5),
    (410, 600, 10),
    (620, 1000, 20),
    (1050, 2000, 50),
    (2100, 3000, 100),
    (3200, 5000, 200),
    (5500, 10000, 500),
    (11000, 100000, 1000),
)

PRICES: tuple[int, ...] = tuple(p for lo, hi, step in _BANDS for p in range(lo, hi + 1, step))
"""The Betfair price ladder in hundredths, ascending: 1.01 .. 1000, 350 prices."""

TICK: dict[int, int] = {p: i for i, p in enumerate(PRICES)}
"""Ladder index of each valid price; membership is the price check."""

assert len(PRICES) == 350

MAX_DIGITS = 30
"""Most digits before the point that a parser reads; a longer number is ``INVALID`` (no field
holds more than 19 digits), which also keeps huge text and exponents from costing time."""


def parse_fixed(value: object, places: int) -> int | None:
    """Exact decimal to an integer scaled by ``10**places``.

    Accepts a decimal string ("2.10", "-3"; exponents such as "1e2" are refused), an int, a
    ``Decimal`` (what ``json.loads(..., parse_float=Decimal)`` makes of a JSON number), or a
    float read by its shortest decimal representation (``repr``). Returns None for anything
    that is not a number and ``INVALID`` for a number with more decimal places than
    ``places`` allows (trailing zeros are fine) or more than ``MAX_DIGITS`` digits before the
    point.
    """
    if type(value) is int:
        return value * 10**places
    if type(value) is Decimal:
        if not value.is_finite():
            return None
        if not value:
            return 0
        if not -places <= value.adjusted() < MAX_DIGITS:
            return INVALID  # too small for ``places`` or too large, without writing it out
        text = format(value, "f")
    elif type(value) is float:
        if value != value or value in (float("inf"), float("-inf")):
            return None
        text = repr(value)
        if "e" in text or "E" in text:
            return INVALID
    elif type(value) is str:
        text = value.strip()
    else:
        return None
    negative = text.startswith("-")
    if negative or text.startswith("+"):
        text = text[1:]
    whole, _, frac = text.partition(".")
    if not whole and not frac:
        return None
    if not (whole.isdigit() or (whole == "" and frac)) or (frac and not frac.isdigit()):
        return None
    if not whole.isascii() or not frac.isascii():
        return None
    frac = frac.rstrip("0")
    whole = whole.lstrip("0")
    if len(frac) > places or len(whole) > MAX_DIGITS:
        return INVALID
    scaled = int(whole or "0") * 10**places + int((frac or "0").ljust(places, "0") if places else 0)
    return -scaled if negative else scaled


def format_price(price: int) -> str:
    """Hundredths to the shortest decimal text: 210 -> "2.1", 100000 -> "1000"."""
    sign = "-" if price < 0 else ""
    whole, frac = divmod(abs(price), 100)
    if frac == 0:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{frac:02d}".rstrip("0")


def format_money(pence: int) -> str:
    """Pence to pounds with two decimals: 1000 -> "10.00", -5 -> "-0.05"."""
    sign = "-" if pence < 0 else ""
    whole, frac = divmod(abs(pence), 100)
    return f"{sign}{whole}.{frac:02d}"


def format_rate(basis_points: int) -> str:
    """Basis points to the shortest percentage text: 500 -> "5", 250 -> "2.5"."""
    return format_price(basis_points)


def lay_liability(stake: int, price: int) -> int:
    """What a layer risks on a backer's stake at a price, in pence, rounded down. The
    engine's hot paths and ``accounts.Position.hold`` inline the same arithmetic.

    It is also the backer's profit if the bet wins: per trade the winner's profit is rounded
    down to the penny and the loser pays exactly that, so no money is ever created or lost.
    """
    return stake * (price - 100) // 100
