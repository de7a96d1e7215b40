"""An input entry's commands read straight from their msgpack bytes.

The stream form of a layout-2 entry's ``c`` is a msgpack array of command maps. Unpacking it
into dicts and then checking each dict cost the matcher and a replay more than applying the
commands: every key of every map became a string object. Here the two commands nearly every
entry holds, ``place`` and ``cancel``, are read from the bytes into the core's tuples
directly; any other item, or anything unusual in one (a key it does not expect, a repeated
key, a value of another kind), is unpacked on its own and decoded by
``exchange.commands.decode``. The answer is always exactly what unpacking the whole array
and decoding each map gives (a test holds them together on random and damaged bytes); where
the bytes are not a valid msgpack array of ``n`` items at all, ``decode_packed`` returns
None, and the caller answers the entry as the contract says.
"""

from __future__ import annotations

from typing import Any

import msgpack  # type: ignore[import-untyped]

from .commands import _ids_printable, _place_tuple, decode
from .limits import MAX_ID, MAX_INT
from .rules import PRINTABLE_IDS

_unpackb = msgpack.unpackb

# Keys of the fast commands, and a code each.
_TYPE, _ACCOUNT, _MARKET, _RUNNER, _SIDE, _PRICE, _STAKE = 1, 2, 3, 4, 5, 6, 7
_TIF, _PERSISTENCE, _REF, _ORDER, _REDUCE = 8, 9, 10, 11, 12
_TEXT = (1 << _TYPE) | (1 << _ACCOUNT) | (1 << _MARKET) | (1 << _SIDE) | (1 << _TIF) | (
    1 << _PERSISTENCE) | (1 << _REF)
"""The keys whose value is text (or nil)."""
_ENUMS = (1 << _TYPE) | (1 << _SIDE) | (1 << _TIF) | (1 << _PERSISTENCE)
"""The keys whose value is one of a few words: read without making a new string each time."""
_WORDS = ("place", "cancel", "BACK", "LAY", "GTC", "IOC", "FOK", "LAPSE", "PERSIST")
_WORD_BYTES = tuple(w.encode() for w in _WORDS)
_BROKEN = -2
"""Bytes msgpack itself would refuse: the whole array is unreadable."""


def decode_packed(payload: bytes, n: int, first: int, ts: int, rules: int = 1) -> list | None:
    """The ``n`` commands in ``payload`` (a msgpack array of command maps), at seqs ``first``
    on, as ``decode(item, seq, ts, wire=True, rules=rules)`` gives each; None when the bytes
    are not a msgpack array of exactly ``n`` items that msgpack would read."""
    size = len(payload)
    if size == 0:
        return None
    buf = memoryview(payload)
    pos, count = _array_header(buf, 0, size)
    if pos < 0 or count != n:
        return None
    ids = rules >= PRINTABLE_IDS
    out = []
    seq = first
    for _ in range(n):
        if pos >= size:
            return None
        start = pos
        cmd, pos = _fast_item(buf, payload, pos, size, seq, ts)
        if pos == _BROKEN:
            return None
        if cmd is None or (ids and not _ids_printable(cmd)):
            end = _skip(buf, start, size, 0)
            if end < 0:
                return None
            try:
                obj = _unpackb(payload[start:end])
            except Exception:  # msgpack raises several unrelated types on bad bytes
                return None
            cmd = decode(obj, seq, ts, wire=True, rules=rules)
            pos = end
        out.append(cmd)
        seq += 1
    if pos != size:
        return None  # bytes after the array: msgpack refuses them
    return out


def _array_header(buf: Any, pos: int, size: int) -> tuple[int, int]:
    """(position after the header, item count) of an array at ``pos``; (-1, 0) if none."""
    b = buf[pos]
    if 0x90 <= b <= 0x9F:
        return pos + 1, b & 0x0F
    if b == 0xDC and pos + 3 <= size:
        return pos + 3, (buf[pos + 1] << 8) | buf[pos + 2]
    if b == 0xDD and pos + 5 <= size:
        return pos + 5, ((buf[pos + 1] << 24) | (buf[pos + 2] << 16) | (buf[pos + 3] << 8)
                         | buf[pos + 4])
    return -1, 0


def _uint(buf: Any, pos: int, width: int) -> int:
    v = 0
    for i in range(width):
        v = (v << 8) | buf[pos + i]
    return v


def _is(buf: Any, start: int, name: bytes) -> bool:
    """Whether the bytes at ``start`` spell ``name`` (the length is known to match)."""
    for i in range(len(name)):
        if buf[start + i] != name[i]:
            return False
    return True


def _word(buf: Any, start: int, length: int) -> Any:
    """The word of ``_WORDS`` the bytes at ``start`` spell (no new string), or None."""
    for i in range(9):
        name = _WORD_BYTES[i]
        if len(name) == length and buf[start] == name[0] and _is(buf, start, name):
            return _WORDS[i]
    return None


def _key(buf: Any, start: int, length: int) -> int:
    """The code of a fast command's key, or 0 for any other key."""
    first = buf[start]
    if length == 4:
        if first == 116 and _is(buf, start, b"type"):
            return _TYPE
        return _SIDE if first == 115 and _is(buf, start, b"side") else 0
    if length == 7:
        return _ACCOUNT if _is(buf, start, b"account") else 0
    if length == 6:
        if first == 109:
            return _MARKET if _is(buf, start, b"market") else 0
        if first == 114:
            if _is(buf, start, b"runner"):
                return _RUNNER
            return _REDUCE if _is(buf, start, b"reduce") else 0
        return 0
    if length == 5:
        if first == 112:
            return _PRICE if _is(buf, start, b"price") else 0
        if first == 115:
            return _STAKE if _is(buf, start, b"stake") else 0
        return _ORDER if first == 111 and _is(buf, start, b"order") else 0
    if length == 3:
        if first == 116:
            return _TIF if _is(buf, start, b"tif") else 0
        return _REF if first == 114 and _is(buf, start, b"ref") else 0
    if length == 11:
        return _PERSISTENCE if _is(buf, start, b"persistence") else 0
    return 0


def _fast_item(
    buf: Any, data: bytes, pos: int, size: int, seq: int, ts: int
) -> tuple[Any, int]:
    """(a place or cancel tuple, position after the item), read from the bytes (``buf``, a
    view of ``data``); (None, pos) to leave the item to ``decode`` (anything but the usual:
    the general way judges it); (None, ``_BROKEN``) for text msgpack would refuse."""
    start = pos
    b = buf[pos]
    if 0x80 <= b <= 0x8F:
        pairs = b & 0x0F
        pos += 1
    else:
        return None, start
    seen = 0
    kind = account = market = side = tif = persist = ref = None
    runner = price = stake = order = reduce = None
    for _ in range(pairs):
        if pos >= size:
            return None, start
        b = buf[pos]
        if b < 0xA0 or b > 0xBF:  # the keys of fast commands are short text
            return None, start
        length = b & 0x1F
        pos += 1
        if pos + length >= size:
            return None, start
        code = _key(buf, pos, length)
        if code == 0 or seen & (1 << code):
            return None, start  # a key of no fast command, or twice: decode judges it
        seen |= 1 << code
        pos += length
        b = buf[pos]
        if (1 << code) & _TEXT:
            if b == 0xC0:
                value = None
                pos += 1
            else:
                if 0xA0 <= b <= 0xBF:
                    v0 = pos + 1
                    v1 = v0 + (b & 0x1F)
                elif b == 0xD9 and pos + 1 < size:
                    v0 = pos + 2
                    v1 = v0 + buf[pos + 1]
                else:
                    return None, start
                if v1 > size:
                    return None, start
                value = _word(buf, v0, v1 - v0) if (1 << code) & _ENUMS else None
                if value is None:  # an id (or an unusual word): decode the text
                    try:
                        value = data[v0:v1].decode("utf-8")
                    except UnicodeDecodeError:
                        return None, _BROKEN
                pos = v1
            if code == _TYPE:
                kind = value
            elif code == _ACCOUNT:
                account = value
            elif code == _MARKET:
                market = value
            elif code == _SIDE:
                side = value
            elif code == _TIF:
                tif = value
            elif code == _PERSISTENCE:
                persist = value
            else:
                ref = value
        else:
            if b <= 0x7F:
                number = b
                pos += 1
            elif b == 0xCC and pos + 2 <= size:
                number = buf[pos + 1]
                pos += 2
            elif b == 0xCD and pos + 3 <= size:
                number = (buf[pos + 1] << 8) | buf[pos + 2]
                pos += 3
            elif b == 0xCE and pos + 5 <= size:
                number = ((buf[pos + 1] << 24) | (buf[pos + 2] << 16) | (buf[pos + 3] << 8)
                          | buf[pos + 4])
                pos += 5
            elif b == 0xC0:
                number = None
                pos += 1
            else:  # a large or negative number, or not one: the general way
                return None, start
            if code == _RUNNER:
                runner = number
            elif code == _PRICE:
                price = number
            elif code == _STAKE:
                stake = number
            elif code == _ORDER:
                order = number
            else:
                reduce = number
    if kind == "place":
        if seen & ((1 << _ORDER) | (1 << _REDUCE)):
            return None, start
        cmd = _place_tuple(account, market, runner, side, price, stake,
                           "GTC" if tif is None else tif,
                           "LAPSE" if persist is None else persist, ref, seq, ts)
        return cmd, pos
    if kind == "cancel":
        if seen & ~((1 << _TYPE) | (1 << _ACCOUNT) | (1 << _ORDER) | (1 << _REDUCE)):
            return None, start
        if (
            type(account) is str and 0 < len(account) <= MAX_ID and account[0] != "@"
            and type(order) is int and 0 <= order <= MAX_INT
            and (reduce is None or type(reduce) is int)
        ):
            return ("cancel", seq, ts, account, order, reduce), pos
    return None, start


def _skip(buf: Any, pos: int, size: int, depth: int) -> int:
    """The position after the msgpack value at ``pos``; -1 if the bytes do not hold one
    (or nest past 512 levels)."""
    if pos >= size or depth > 512:
        return -1
    b = buf[pos]
    if b <= 0x7F or b >= 0xE0 or b == 0xC0 or b == 0xC2 or b == 0xC3:
        return pos + 1
    if 0x80 <= b <= 0x8F or 0x90 <= b <= 0x9F:
        items = (b & 0x0F) * (2 if b <= 0x8F else 1)
        pos += 1
    elif 0xA0 <= b <= 0xBF:
        end = pos + 1 + (b & 0x1F)
        return end if end <= size else -1
    elif b in (0xCC, 0xCD, 0xCE, 0xCF, 0xD0, 0xD1, 0xD2, 0xD3):
        end = pos + 2 + ((1 << ((b - 0xCC) & 3)) - 1)
        return end if end <= size else -1
    elif b == 0xCA or b == 0xCB:
        end = pos + (5 if b == 0xCA else 9)
        return end if end <= size else -1
    elif b in (0xC4, 0xC5, 0xC6, 0xD9, 0xDA, 0xDB):
        width = {0xC4: 1, 0xC5: 2, 0xC6: 4, 0xD9: 1, 0xDA: 2, 0xDB: 4}[b]
        if pos + 1 + width > size:
            return -1
        end = pos + 1 + width + _uint(buf, pos + 1, width)
        return end if end <= size else -1
    elif b in (0xC7, 0xC8, 0xC9):
        width = {0xC7: 1, 0xC8: 2, 0xC9: 4}[b]
        if pos + 2 + width > size:
            return -1
        end = pos + 2 + width + _uint(buf, pos + 1, width)
        return end if end <= size else -1
    elif 0xD4 <= b <= 0xD8:
        end = pos + 2 + (1 << (b - 0xD4))
        return end if end <= size else -1
    elif b in (0xDC, 0xDD, 0xDE, 0xDF):
        width = 2 if b in (0xDC, 0xDE) else 4
        if pos + 1 + width > size:
            return -1
        items = _uint(buf, pos + 1, width) * (2 if b >= 0xDE else 1)
        pos += 1 + width
    else:
        return -1  # 0xC1: never used
    for _ in range(items):
        pos = _skip(buf, pos, size, depth + 1)
        if pos < 0:
            return -1
    return pos
