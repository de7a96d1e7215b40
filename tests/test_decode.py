"""The stream-form fast decoders always agree with the generic decoder."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exchange.commands import _CHECKS, _FAST_WIRE, COMMANDS, decode

VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=True), st.text(max_size=70), st.binary(max_size=5),
    st.sampled_from(["BACK", "LAY", "GTC", "IOC", "FOK", "LAPSE", "PERSIST", "@x", "", "a" * 64,
                     "a" * 65]),
    st.lists(st.integers(), max_size=3),
)


def generic(obj: dict[str, Any], seq: int, ts: int, rules: int) -> tuple:
    """The generic decoder with the fast paths switched off."""
    saved = dict(_FAST_WIRE)
    _FAST_WIRE.clear()
    try:
        return decode(obj, seq, ts, wire=True, rules=rules)
    finally:
        _FAST_WIRE.update(saved)


def command_like(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    names = [f.name for f in COMMANDS[kind]] + ["ts", "extra"]
    good = {
        "account": st.sampled_from(["alice", "@house", "", "b" * 65, "al\x1b[2Jice", "é\x85"]),
        "market": st.sampled_from(["1.1", "", "m" * 65, "1.\x00", "1.1 é"]),
        "ref": st.sampled_from(["r1", "r\x7f", "r\u2028", "r" * 64]),
        "runner": st.integers(min_value=-1, max_value=2**63),
        "side": st.sampled_from(["BACK", "LAY", "back"]),
        "price": st.integers(min_value=-(2**63), max_value=2**63),
        "stake": st.integers(min_value=-(2**63), max_value=2**63),
        "order": st.integers(min_value=-1, max_value=2**63),
        "reduce": st.integers(min_value=-(2**63), max_value=2**63),
    }
    return st.fixed_dictionaries(
        {"type": st.just(kind)},
        optional={n: st.one_of(good.get(n, VALUES), VALUES) for n in names},
    )


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          derandomize=True)
@given(obj=st.one_of(command_like("place"), command_like("cancel")),
       rules=st.sampled_from([1, 2]))
def test_fast_decoders_agree_with_the_generic_one(obj: dict[str, Any], rules: int) -> None:
    assert decode(obj, 7, 99, wire=True, rules=rules) == generic(obj, 7, 99, rules)


def test_fast_paths_cover_the_hot_commands() -> None:
    assert set(_FAST_WIRE) == {"place", "cancel"}
    assert set(_FAST_WIRE) <= set(_CHECKS[True, False]) == set(_CHECKS[True, True])
    obj = {"type": "place", "account": "a", "market": "m", "runner": 1, "side": "BACK",
           "price": 210, "stake": 100}
    assert _FAST_WIRE["place"](obj, 1, 2) == generic(obj, 1, 2, 2) != ("invalid",)
