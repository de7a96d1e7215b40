"""The contract reference (docs/contract.md), generated from the code's own tables.

``python -m tools.docs > docs/contract.md`` rewrites it; a test fails when the committed page
and the code disagree, so the reference cannot drift from what the exchange does.
"""

from __future__ import annotations

from exchange.commands import COMMANDS, INT, INTS, MONEY, PRICE, RATE, REQUIRED, SINCE
from exchange.events import (
    CANCEL_REASONS,
    EVENT_DOCS,
    EVENT_FIELDS,
    FIELD_DOCS,
    MONEY_FIELDS,
    PRICE_FIELDS,
    RATE_FIELDS,
    REJECT_REASONS,
)
from exchange.units import format_money, format_price, format_rate

KIND_TEXT = {
    "id": "text, 1-64 characters",
    "account": "text, 1-64 characters, not starting with @",
    INT: "integer",
    INTS: "list of integers",
    PRICE: 'decimal odds, e.g. "2.1" (stream: integer hundredths, 210)',
    MONEY: 'pounds, e.g. "10.00" (stream: integer pence, 1000)',
    RATE: 'percent, e.g. "5" (stream: integer basis points, 500)',
    "side": "BACK or LAY",
    "tif": "GTC, IOC or FOK",
    "persistence": "LAPSE or PERSIST",
    "status": "OPEN, SUSPENDED or CLOSED",
}


def _default(kind: str, value: object) -> str:
    if value is REQUIRED:
        return "required"
    if value is None:
        return "optional"
    if kind == MONEY:
        return f'"{format_money(value)}"'  # type: ignore[arg-type]
    if kind == PRICE:
        return f'"{format_price(value)}"'  # type: ignore[arg-type]
    if kind == RATE:
        return f'"{format_rate(value)}"'  # type: ignore[arg-type]
    return f"{value}"


def render() -> str:
    out = [
        "# The JSON contract",
        "",
        "Generated from the code by `python -m tools.docs`; a test keeps it equal to the code.",
        "",
        "Commands go in one JSON object a line (`exch submit`, `exch simulate`); events come",
        "out the same way (`exch simulate`, `exch tail --json`, golden files). Prices and money",
        'are decimal strings ("2.1", "10.00"): nothing is lost to binary floats. On the Redis',
        "streams the same records travel as msgpack maps with the same field names, with",
        "integers instead: prices in hundredths of decimal odds, money in pence, rates in basis",
        "points.",
        "",
        "## Commands",
        "",
        "Every command has a `type` and may carry `ts` (milliseconds): `exch simulate` uses it",
        "as the command's time; through the journal the sequencer stamps Redis time instead.",
        "An unknown field makes the command MALFORMED (a typo must not silently change a bet).",
        "A field given twice in one object is refused at the edge like a line that is not JSON",
        "(JSON readers disagree on which value wins): `exch submit` reports it MALFORMED and",
        "sends nothing, `exch simulate` stops there. A `ts` is 0 to 9,223,372,036,854",
        "(2262-04-11, the latest a pandas timestamp holds); a journal entry whose time is",
        "earlier than the entry before, or past that bound (from rules version 4), keeps the",
        "previous entry's time. Ids (markets, accounts, refs) are printable text: a control",
        "character makes the command MALFORMED (from rules version 2).",
        "",
    ]
    for kind, fields in COMMANDS.items():
        out.append(f"### `{kind}`")
        out.append("")
        if not fields:
            out.append("No fields: it only carries time (the matcher sequences it while orders "
                       "wait out an in-play bet delay).")
            out.append("")
            continue
        if kind in SINCE:
            out.append(f"From rules version {SINCE[kind]} (`exch rules`); before, an unknown "
                       "command (MALFORMED).")
            out.append("")
        out.append("| field | kind | default | meaning |")
        out.append("|---|---|---|---|")
        for f in fields:
            out.append(f"| `{f.name}` | {KIND_TEXT.get(f.kind, f.kind)} | "
                       f"{_default(f.kind, f.default)} | {f.doc} |")
        out.append("")
    out += [
        "## Events",
        "",
        "Every event has `type` and `seq`, the sequence number of the command that caused it;",
        "one command's events are journaled together, in order, in the output entry with the",
        "same seq.",
        "",
    ]
    for kind, names in EVENT_FIELDS.items():
        out.append(f"### `{kind}`: {EVENT_DOCS[kind]}")
        out.append("")
        out.append("| field | form | meaning |")
        out.append("|---|---|---|")
        rates = RATE_FIELDS.get(kind, frozenset())
        for name in names:
            if name in rates:
                form = "percent"
            elif name in PRICE_FIELDS:
                form = "price"
            elif name in MONEY_FIELDS:
                form = "money"
            else:
                form = ""
            out.append(f"| `{name}` | {form} | {FIELD_DOCS[name]} |")
        out.append("")
    out += ["## Rejection reasons (`order_rejected.reason`)", "", "| reason | meaning |",
            "|---|---|"]
    out += [f"| `{k}` | {v} |" for k, v in REJECT_REASONS.items()]
    out += ["", "## Cancellation reasons (`order_cancelled.reason`)", "", "| reason | meaning |",
            "|---|---|"]
    out += [f"| `{k}` | {v} |" for k, v in CANCEL_REASONS.items()]
    out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    print(render(), end="")
