"""Commands: their fields, and the decoders from the public JSON form and the stream form.

A command in the core is a tuple ``(type, seq, ts, field, ...)`` with the fields in the order of
``COMMANDS[type]``; money, prices and rates are integers (see ``exchange.units``). Two forms
come in from outside, both objects keyed by the field names below plus ``type``:

- the JSON form (``exch submit``, ``exch simulate``, golden files): prices and money as decimal
  strings ("2.1", "10.00"); numbers are accepted and read by their decimal text;
- the stream form (msgpack maps on ``exch:{p}:in``): the same names with integers for money
  (pence), prices (hundredths) and rates (basis points).

``decode`` turns either into a command tuple and never raises: an object that is not a command
becomes an ``invalid`` tuple that the core answers with an ``order_rejected``. Values that are
numbers but not representable (a price of "2.105", a stake of "1.001") decode to ``INVALID``
(-1), which the core rejects with the precise reason (``INVALID_PRICE``, ``INVALID_STAKE``...).
The core checks every value again: the decoder only shapes.

``problem`` is the edge's stricter look at a JSON command: everything that can be judged
without the exchange's state (ladder, stake bounds, ids, market definitions), with a message
for people. ``exch submit`` refuses a file with any such line before sending anything.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .book import BACK, LAY
from .events import (
    INVALID_AMOUNT,
    INVALID_MARKET,
    INVALID_PRICE,
    INVALID_STAKE,
    INVALID_WINNERS,
    MALFORMED,
)
from .limits import MAX_DELAY_MS, MAX_ID, MAX_INT, MAX_MONEY, MAX_RUNNERS, MAX_TS
from .named import NAMED, Invalid
from .rules import PRINTABLE_IDS, TRANSFERS, printable
from .units import INVALID, TICK, format_money, format_price, format_rate, parse_fixed

REQUIRED: Any = object()

# Field kinds.
ID = "id"  # a market id or client ref: text of 1..64 characters
ACCOUNT = "account"  # an account id: an id not starting with "@" (reserved for the exchange)
INT = "int"  # a non-negative integer: runner id, order id, number of winners, delay
INTS = "ints"  # a list of non-negative integers: runners, winners
PRICE = "price"  # decimal odds on the ladder; hundredths on the stream
MONEY = "money"  # pounds with at most two decimals; pence on the stream
RATE = "rate"  # a percentage with at most two decimals; basis points on the stream
SIDE = "side"
TIF = "tif"
PERSISTENCE = "persistence"
STATUS = "status"

ENUMS = {
    SIDE: (BACK, LAY),
    TIF: ("GTC", "IOC", "FOK"),
    PERSISTENCE: ("LAPSE", "PERSIST"),
    STATUS: ("OPEN", "SUSPENDED", "CLOSED"),
}
SCALED = (PRICE, MONEY, RATE)


class Field(NamedTuple):
    name: str
    kind: str
    default: Any = REQUIRED
    doc: str = ""


COMMANDS: dict[str, tuple[Field, ...]] = {
    "create_market": (
        Field("market", ID, doc="market id"),
        Field("runners", INTS, doc="runner ids, at least two, all different"),
        Field("commission", RATE, 500, "percent charged on net winnings, default 5"),
        Field("min_stake", MONEY, 100, "smallest stake accepted, default 1.00"),
        Field("winners", INT, 1, "how many runners win (at least one, fewer than runners)"),
        Field("bet_delay_ms", INT, 0, "in-play bet delay in ms, default 0"),
    ),
    "market_status": (
        Field("market", ID, doc="market id"),
        Field("status", STATUS, doc="OPEN, SUSPENDED or CLOSED"),
    ),
    "turn_in_play": (Field("market", ID, doc="market id"),),
    "deposit": (
        Field("account", ACCOUNT, doc="account id"),
        Field("amount", MONEY, doc="pounds, positive"),
    ),
    "withdraw": (
        Field("account", ACCOUNT, doc="account id"),
        Field("amount", MONEY, doc="pounds, positive, at most what is available"),
    ),
    "transfer": (
        Field("account", ACCOUNT, doc="account id"),
        Field("amount", MONEY, doc="pounds, positive, at most what is available here"),
        Field("from_partition", INT, doc="the partition the money leaves (the command is "
              "journaled there)"),
        Field("to_partition", INT, doc="the partition the money goes to"),
    ),
    "transfer_in": (
        Field("account", ACCOUNT, doc="account id"),
        Field("amount", MONEY, doc="pounds, positive"),
        Field("transfer", INT, doc="the transfer's id, from its transfer_out (only the "
              "transfer service sends this)"),
    ),
    "place": (
        Field("account", ACCOUNT, doc="account id"),
        Field("market", ID, doc="market id"),
        Field("runner", INT, doc="runner id"),
        Field("side", SIDE, doc="BACK or LAY"),
        Field("price", PRICE, doc="decimal odds on the ladder"),
        Field("stake", MONEY, doc="backer's stake in pounds (for a LAY, the stake it accepts)"),
        Field("tif", TIF, "GTC", "GTC (default), IOC or FOK"),
        Field("persistence", PERSISTENCE, "LAPSE", "LAPSE (default) or PERSIST"),
        Field("ref", ID, None, "client ref, unique per account (optional)"),
    ),
    "cancel": (
        Field("account", ACCOUNT, doc="owner's account id"),
        Field("order", INT, doc="order id"),
        Field("reduce", MONEY, None, "pounds to take off; all if absent"),
    ),
    "replace": (
        Field("account", ACCOUNT, doc="owner's account id"),
        Field("order", INT, doc="order id"),
        Field("price", PRICE, doc="new price"),
    ),
    "settle": (
        Field("market", ID, doc="market id"),
        Field("winners", INTS, doc="winning runner ids"),
    ),
    "void": (Field("market", ID, doc="market id"),),
    "heartbeat": (),
}
"""Every command type with its fields in tuple order (after type, seq, ts)."""

SINCE = {"transfer": TRANSFERS, "transfer_in": TRANSFERS}
"""Command types that exist only from a rules version on (``exchange.rules``)."""

ENVELOPE = ("type", "ts")
"""Keys any command object may carry besides its fields; ``ts`` is replaced by the journal."""


def _invalid(
    seq: int, ts: int, obj: Any, kind: Any, reason: str = MALFORMED, printable_ids: bool = False
) -> tuple:
    get = obj.get if isinstance(obj, dict) else (lambda k: None)

    def text(k: str) -> Any:  # echo only what a stream can carry (and, from rules 2, print)
        v = get(k)
        return v if _text_ok(v) and (not printable_ids or printable(v)) else None

    return Invalid(
        "invalid", seq, ts, kind if type(kind) is str and kind in COMMANDS else None,
        text("account"), text("market"), text("ref"), get("order"), reason,
    )


_BAD: Any = object()


def _check_id(v: Any) -> Any:
    return v if type(v) is str and 0 < len(v) <= MAX_ID else _BAD


def _check_account(v: Any) -> Any:
    return v if type(v) is str and 0 < len(v) <= MAX_ID and v[0] != "@" else _BAD


def _text_ok(v: Any) -> bool:
    """Text of 1 to 64 characters that UTF-8, so msgpack, can carry. JSON can spell a lone
    surrogate ("\\ud800"), which no stream and no snapshot could ever hold; msgpack text
    (the stream form) cannot, so the wire checks leave this out."""
    if type(v) is not str or not 0 < len(v) <= MAX_ID:
        return False
    if v.isascii():
        return True
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_json_id(v: Any) -> Any:
    return v if _text_ok(v) else _BAD


def _check_json_account(v: Any) -> Any:
    return v if _text_ok(v) and v[0] != "@" else _BAD


def _check_int(v: Any) -> Any:
    return v if type(v) is int and 0 <= v <= MAX_INT else _BAD


def _check_ints(v: Any) -> Any:
    if (type(v) is list or type(v) is tuple) and all(
        type(x) is int and 0 <= x <= MAX_INT for x in v
    ):
        return tuple(v)
    return _BAD


def _check_scaled_wire(v: Any) -> Any:
    return v if type(v) is int and -MAX_INT <= v <= MAX_INT else _BAD


def _check_scaled_json(v: Any) -> Any:
    if type(v) is bool:
        return _BAD
    scaled = parse_fixed(v, 2)
    if scaled is None:
        return _BAD
    return scaled if -MAX_INT <= scaled <= MAX_INT else INVALID  # a number, not representable


def _check_enum(values: tuple[str, ...]) -> Any:
    def check(v: Any) -> Any:
        return v if type(v) is str and v in values else _BAD

    return check


def _printable_too(check: Any) -> Any:
    def both(v: Any) -> Any:
        v = check(v)
        return v if v is _BAD or printable(v) else _BAD

    return both


def _checkers(
    wire: bool, printable_ids: bool = False
) -> dict[str, tuple[tuple[str, Any, Any], ...]]:
    by_kind = {ID: _check_id, ACCOUNT: _check_account, INT: _check_int, INTS: _check_ints}
    if not wire:
        by_kind.update({ID: _check_json_id, ACCOUNT: _check_json_account})
    if printable_ids:
        by_kind.update({ID: _printable_too(by_kind[ID]),
                        ACCOUNT: _printable_too(by_kind[ACCOUNT])})
    scaled = _check_scaled_wire if wire else _check_scaled_json
    out = {}
    for kind, spec in COMMANDS.items():
        out[kind] = tuple(
            (
                f.name,
                by_kind.get(f.kind) or (scaled if f.kind in SCALED else _check_enum(ENUMS[f.kind])),
                f.default,
            )
            for f in spec
        )
    return out


_CHECKS = {(wire, ids): _checkers(wire, ids) for wire in (False, True) for ids in (False, True)}
"""The field checks by (stream form?, printable ids only?)."""
_NAMES = {kind: frozenset(f.name for f in spec) | set(ENVELOPE) for kind, spec in COMMANDS.items()}


def decode(obj: Any, seq: int, ts: int, *, wire: bool = False, rules: int = 1) -> tuple:
    """A JSON-form (or, with ``wire``, stream-form) object as a command tuple (a named one:
    ``exchange.named``, but for the stream form's fast paths). Never raises.

    This is the one place where outside data becomes a command: every field is checked for
    its kind (text ids of 1 to 64 characters, account ids not starting with "@",
    non-negative 64-bit integers, known enumeration values, exact decimals), so the core can
    rely on the types of what it gets and judge only the values (on the ladder? enough funds?).
    Anything else, and any unknown field, makes an ``invalid`` command (``MALFORMED``).
    ``rules`` is the rules version in force at ``seq`` (``exchange.rules``): from version 2,
    ids must be printable too.
    """
    ids = rules >= PRINTABLE_IDS
    if type(obj) is not dict:
        return _invalid(seq, ts, obj, None)
    kind = obj.get("type")
    if wire and type(kind) is str:
        fast = _FAST_WIRE.get(kind)
        if fast is not None:
            cmd = fast(obj, seq, ts)
            if cmd is not None and (not ids or _ids_printable(cmd)):
                return cmd
    checks = _CHECKS[wire, ids].get(kind) if type(kind) is str else None
    if checks is None:
        return _invalid(seq, ts, obj, kind, printable_ids=ids)
    if kind in SINCE and rules < SINCE[kind]:  # unknown then, and answered as it was
        return _invalid(seq, ts, obj, None, printable_ids=ids)
    names = _NAMES[kind]  # type: ignore[index]
    for k in obj:
        if k not in names:
            return _invalid(seq, ts, obj, kind, printable_ids=ids)
    values: list[Any] = [kind, seq, ts]
    append = values.append
    get = obj.get
    for name, check, default in checks:
        v = get(name)
        if v is None:
            if default is REQUIRED:
                return _invalid(seq, ts, obj, kind, printable_ids=ids)
            append(default)
        else:
            v = check(v)
            if v is _BAD:
                return _invalid(seq, ts, obj, kind, printable_ids=ids)
            append(v)
    return NAMED[kind]._make(values)


def _printable(text: str) -> bool:
    """``rules.printable``, with the common case here, where the compiled decoder calls it
    without a Python frame: text Python calls printable holds no control character (Python
    is stricter: it also refuses, say, a no-break space, which ``rules.printable`` allows)."""
    return text.isprintable() or printable(text)


def _ids_printable(cmd: tuple) -> bool:
    """Whether the ids of a fast-path command (place or cancel) are printable."""
    if cmd[0] == "place":
        ref = cmd[11]
        return _printable(cmd[3]) and _printable(cmd[4]) and (ref is None or _printable(ref))
    return _printable(cmd[3])


# Fast paths for the commands the matcher sees most, in the stream form: the same checks as
# the generic decoder, unrolled. They return None for anything unusual (an unknown field, a
# value of the wrong kind), and the generic decoder then gives the precise answer; a test
# checks that both always agree. They build the core's plain tuples, not the named ones
# (exchange.named): the matcher never reads a command by name.


def _fast_place(obj: dict, seq: int, ts: int) -> tuple | None:
    n = len(obj)
    try:
        account = obj["account"]
        market = obj["market"]
        runner = obj["runner"]
        side = obj["side"]
        price = obj["price"]
        stake = obj["stake"]
    except KeyError:
        return None
    tif: Any
    persist: Any
    ref: Any
    if n == 7:  # the usual: no optional field
        tif, persist, ref = "GTC", "LAPSE", None
    else:
        get = obj.get
        tif = get("tif")
        persist = get("persistence")
        ref = get("ref")
        if n != 7 + ("tif" in obj) + ("persistence" in obj) + ("ref" in obj) + ("ts" in obj):
            return None
        if tif is None:
            tif = "GTC"
        if persist is None:
            persist = "LAPSE"
    return _place_tuple(account, market, runner, side, price, stake, tif, persist, ref, seq, ts)


def _place_tuple(
    account: Any, market: Any, runner: Any, side: Any, price: Any, stake: Any, tif: Any,
    persist: Any, ref: Any, seq: int, ts: int,
) -> tuple | None:
    """A place's tuple if every field is of its kind (the generic decoder's checks,
    unrolled), else None."""
    if (
        type(account) is str and 0 < len(account) <= MAX_ID and account[0] != "@"
        and type(market) is str and 0 < len(market) <= MAX_ID
        and type(runner) is int and 0 <= runner <= MAX_INT
        and type(side) is str and (side == "BACK" or side == "LAY")
        and type(price) is int and -MAX_INT <= price <= MAX_INT
        and type(stake) is int and -MAX_INT <= stake <= MAX_INT
        and type(tif) is str and (tif == "GTC" or tif == "IOC" or tif == "FOK")
        and type(persist) is str and (persist == "LAPSE" or persist == "PERSIST")
        and (ref is None or (type(ref) is str and 0 < len(ref) <= MAX_ID))
    ):
        return ("place", seq, ts, account, market, runner, side, price, stake, tif, persist, ref)
    return None


def _fast_cancel(obj: dict, seq: int, ts: int) -> tuple | None:
    try:
        account = obj["account"]
        order = obj["order"]
    except KeyError:
        return None
    reduce = obj.get("reduce")
    if len(obj) != 3 + ("reduce" in obj) + ("ts" in obj):
        return None
    if (
        type(account) is str and 0 < len(account) <= MAX_ID and account[0] != "@"
        and type(order) is int and 0 <= order <= MAX_INT
        and (reduce is None or (type(reduce) is int and -MAX_INT <= reduce <= MAX_INT))
    ):
        return ("cancel", seq, ts, account, order, reduce)
    return None


_FAST_WIRE = {"place": _fast_place, "cancel": _fast_cancel}


def decode_many(items: list, first: int, ts: int, rules: int = 1) -> list[tuple]:
    """Stream-form objects at seqs ``first``, ``first + 1``, ... as command tuples, as
    ``decode(obj, seq, ts, wire=True, rules=rules)`` gives each: the input entry's commands,
    in one call (compiled, the fast paths are taken without a Python call each)."""
    out = []
    append = out.append
    ids = rules >= PRINTABLE_IDS
    seq = first
    for obj in items:
        cmd = None
        if type(obj) is dict:
            kind = obj.get("type")
            if kind == "place":
                cmd = _fast_place(obj, seq, ts)
            elif kind == "cancel":
                cmd = _fast_cancel(obj, seq, ts)
            if cmd is not None and ids and not _ids_printable(cmd):
                cmd = None
        if cmd is None:
            cmd = decode(obj, seq, ts, wire=True, rules=rules)
        append(cmd)
        seq += 1
    return out


def _id_ok(v: Any) -> bool:
    return _text_ok(v) and printable(v)


def _shown(v: Any, limit: int = 60) -> str:
    """A value as a message shows it: its repr, cut to ``limit`` characters (a 10 MB value is
    not echoed back whole)."""
    text = repr(v)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text):,} characters)"


def _int_ok(v: Any) -> bool:
    return type(v) is int and 0 <= v <= MAX_INT


def problem(obj: Any) -> tuple[str, str] | None:
    """What is wrong with a JSON-form command without looking at any state, as (reason code,
    message), or None if nothing is. Used at the edge to refuse bad lines before sending."""
    if not isinstance(obj, dict):
        return MALFORMED, f"a command is a JSON object, not {type(obj).__name__}"
    kind = obj.get("type")
    if type(kind) is not str or kind not in COMMANDS:
        known = ", ".join(COMMANDS)
        return MALFORMED, f"unknown command type {_shown(kind)} (known: {known})"
    spec = COMMANDS[kind]
    for k in obj:
        if k not in ENVELOPE and k not in _NAMES[kind]:
            return MALFORMED, f"{kind} has no field {_shown(k)}"
    ts = obj.get("ts")
    if "ts" in obj and not (type(ts) is int and 0 <= ts <= MAX_TS):
        return MALFORMED, (f"ts must be milliseconds since 1970 from 0 to {MAX_TS:,} "
                           f"(2262-04-11), not {_shown(ts)}")
    for name, fkind, default, _ in spec:
        v = obj.get(name)
        if v is None:
            if default is REQUIRED:
                return MALFORMED, f"{kind} needs {name!r}"
            continue
        bad = _field_problem(kind, name, fkind, v)
        if bad:
            return bad
    if kind == "create_market":
        runners = obj["runners"]
        winners = obj.get("winners")
        if winners is None:  # null is absent, as ``decode`` takes it: the default
            winners = 1
        if not 2 <= len(runners) <= MAX_RUNNERS or len(set(runners)) != len(runners):
            return INVALID_MARKET, f"runners must be 2 to {MAX_RUNNERS} different ids"
        if not 1 <= winners < len(runners):
            return INVALID_MARKET, "winners must be at least 1 and fewer than the runners"
    if kind == "settle":
        winners = obj["winners"]
        if not winners or len(set(winners)) != len(winners):
            return INVALID_WINNERS, "winners must be one or more different runner ids"
    return None


def _field_problem(kind: str, name: str, fkind: str, v: Any) -> tuple[str, str] | None:
    if fkind == ID or fkind == ACCOUNT:
        if not _id_ok(v):
            return MALFORMED, (f"{name} must be printable text of 1 to {MAX_ID} characters "
                               f"(no control characters), not {_shown(v)}")
        if fkind == ACCOUNT and v.startswith("@"):
            return MALFORMED, f"account ids starting with '@' are reserved: {_shown(v)}"
    elif fkind == INT:
        if not _int_ok(v):
            return MALFORMED, f"{name} must be a non-negative integer, not {_shown(v)}"
        if name == "bet_delay_ms" and v > MAX_DELAY_MS:
            return INVALID_MARKET, f"bet_delay_ms must be at most {MAX_DELAY_MS}"
    elif fkind == INTS:
        if type(v) is not list or not all(_int_ok(x) for x in v):
            return MALFORMED, f"{name} must be a list of non-negative integers, not {_shown(v)}"
    elif fkind in ENUMS:
        if v not in ENUMS[fkind]:
            return MALFORMED, f"{name} must be one of {', '.join(ENUMS[fkind])}, not {_shown(v)}"
    else:
        scaled = None if type(v) is bool else parse_fixed(v, 2)
        if scaled is None:
            return MALFORMED, f"{name} must be a decimal number, not {_shown(v)}"
        if fkind == PRICE:
            if scaled not in TICK:
                return INVALID_PRICE, f"price {_shown(v)} is not on the Betfair ladder"
        elif fkind == RATE:
            if not 0 <= scaled <= 10000:
                return INVALID_MARKET, f"{name} must be a percentage from 0 to 100, not {_shown(v)}"
        else:
            reason = {"amount": INVALID_AMOUNT, "min_stake": INVALID_MARKET}.get(
                name, INVALID_STAKE
            )
            if scaled == INVALID:
                return reason, f"{name} {_shown(v)} is not a whole number of pence"
            if not 0 < scaled <= MAX_MONEY:
                return reason, f"{name} must be more than 0 and at most {format_money(MAX_MONEY)}"
    return None


def _wire_maker(kind: str) -> Any:
    """The function from a ``kind`` command tuple to its stream form, written out field by
    field: the sequencer makes one per command, and a loop over the field table cost four
    times as much."""
    lines = ["def wire(c):", "    out = {'type': c[0]}"]
    for i, f in enumerate(COMMANDS[kind], 3):
        value = f"list(c[{i}])" if f.kind == INTS else f"c[{i}]"
        lines += [f"    if c[{i}] is not None:", f"        out[{f.name!r}] = {value}"]
    lines.append("    return out")
    namespace: dict[str, Any] = {}
    exec("\n".join(lines), namespace)  # noqa: S102 - built from the constant field table
    return namespace["wire"]


_TO_WIRE = {kind: _wire_maker(kind) for kind in COMMANDS}


def to_wire(cmd: tuple) -> dict[str, Any]:
    """A command tuple as its stream form: a map with integer money and prices, without
    ``seq`` and ``ts`` (the journal supplies both) and without absent optional fields."""
    return _TO_WIRE[cmd[0]](cmd)


def to_json(cmd: tuple) -> dict[str, Any]:
    """A command tuple as its JSON form, with ``ts``: decimal strings for money and prices."""
    kind = cmd[0]
    out: dict[str, Any] = {"type": kind}
    for f, v in zip(COMMANDS[kind], cmd[3:]):
        if v is None:
            continue
        if f.kind == PRICE:
            v = format_price(v)
        elif f.kind == MONEY:
            v = format_money(v)
        elif f.kind == RATE:
            v = format_rate(v)
        elif f.kind == INTS:
            v = list(v)
        out[f.name] = v
    out["ts"] = cmd[2]
    return out
