"""Reading an entry's commands straight from their msgpack bytes gives exactly what unpacking
them and decoding each map gives, or leaves the bytes to that general way (None): on the
sequencer's own bytes, on odd but valid msgpack (other integer widths, repeated keys, bin
values, nil), and on damaged bytes."""

from __future__ import annotations

import struct
from typing import Any

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exchange.commands import decode_many, to_wire
from exchange.packed import decode_packed
from tools.sources.workload import core_workload

from .test_decode import command_like

CI = settings(max_examples=1500, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def general(payload: bytes, n: int, first: int, ts: int, rules: int) -> list | None:
    """What the general way makes of the bytes: None where it cannot read n items."""
    try:
        items = msgpack.unpackb(payload)
    except Exception:  # noqa: BLE001 - msgpack raises several unrelated types
        return None
    if type(items) is not list or len(items) != n:
        return None
    return decode_many(items, first, ts, rules)


def agrees(payload: bytes, n: int, rules: int) -> None:
    fast = decode_packed(payload, n, 1001, 55, rules)
    slow = general(payload, n, 1001, 55, rules)
    if fast is not None:
        assert fast == slow
        assert [type(c) for c in fast] == [type(c) for c in slow]


def raw_map(pairs: list[tuple[Any, Any]]) -> bytes:
    """A msgpack map of ``pairs`` as written, repeated keys included."""
    out = bytearray()
    n = len(pairs)
    out += bytes([0x80 | n]) if n < 16 else b"\xde" + struct.pack(">H", n)
    for k, v in pairs:
        out += msgpack.packb(k) + msgpack.packb(v)
    return bytes(out)


def array_of(items: list[bytes]) -> bytes:
    n = len(items)
    head = bytes([0x90 | n]) if n < 16 else b"\xdc" + struct.pack(">H", n)
    return head + b"".join(items)


def test_the_sequencers_bytes_are_read_fast_and_the_same() -> None:
    cmds = core_workload(6000)
    for i in range(0, 6000, 500):
        payload = msgpack.packb([to_wire(c) for c in cmds[i:i + 500]])
        for rules in (1, 2):
            fast = decode_packed(payload, 500, i + 1, 7, rules)
            assert fast is not None and fast == general(payload, 500, i + 1, 7, rules)


@CI
@given(objs=st.lists(st.one_of(command_like("place"), command_like("cancel"),
                               st.dictionaries(st.text(max_size=8), st.integers())),
                     min_size=1, max_size=20),
       rules=st.sampled_from([1, 2]))
def test_command_like_maps(objs: list[dict], rules: int) -> None:
    try:
        payload = msgpack.packb(objs)
    except (TypeError, ValueError, OverflowError):
        return  # not packable: the sequencer never writes it
    agrees(payload, len(objs), rules)


PLACE = [("type", "place"), ("account", "alice"), ("market", "1.1"), ("runner", 1),
         ("side", "BACK"), ("price", 210), ("stake", 500)]


@CI
@given(extra=st.lists(st.tuples(st.sampled_from(["type", "account", "price", "ref", "tif",
                                                 "ts", "order", "x"]),
                                st.one_of(st.none(), st.integers(-2**64, 2**64 - 1),
                                          st.text(max_size=5), st.binary(max_size=3),
                                          st.floats(), st.booleans())),
                      max_size=3),
       rules=st.sampled_from([1, 2]))
def test_repeated_keys_and_odd_values(extra: list[tuple[str, Any]], rules: int) -> None:
    try:
        items = [raw_map(PLACE + extra), raw_map(extra + PLACE)]
    except (TypeError, ValueError, OverflowError, struct.error):
        return
    agrees(array_of(items), 2, rules)


@CI
@given(cut=st.integers(0, 400), flip=st.integers(0, 400), value=st.integers(0, 255),
       tail=st.binary(max_size=3), rules=st.sampled_from([1, 2]))
def test_damaged_bytes(cut: int, flip: int, value: int, tail: bytes, rules: int) -> None:
    payload = msgpack.packb([to_wire(c) for c in core_workload(12)[-4:]])
    damaged = bytearray(payload)
    damaged[flip % len(damaged)] = value
    for data in (payload[:cut % len(payload)], bytes(damaged), payload + tail):
        for n in (3, 4):
            agrees(data, n, rules)


def test_invalid_text_makes_the_whole_array_unreadable() -> None:
    bad = raw_map([("type", "place"), ("account", "alice"), ("market", "1.1"), ("runner", 1),
                   ("side", "BACK"), ("price", 210), ("stake", 500)]).replace(b"alice", b"al\xffe")
    payload = array_of([raw_map(PLACE), bad])
    assert general(payload, 2, 1, 0, 1) is None
    assert decode_packed(payload, 2, 1, 0, 1) is None
