"""The deterministic core of the exchange: no I/O, no clock, no randomness.

``Exchange().apply(command)`` returns the events a command causes. Commands come from
``exchange.commands.decode`` (JSON or stream form); events go out through ``exchange.codec``.
"""

from .commands import COMMANDS, decode, problem
from .engine import Exchange, SequenceError
from .events import CANCEL_REASONS, EVENT_FIELDS, REJECT_REASONS
from .invariants import InvariantError
from .snapshot import SnapshotError

__all__ = [
    "COMMANDS",
    "CANCEL_REASONS",
    "EVENT_FIELDS",
    "REJECT_REASONS",
    "Exchange",
    "InvariantError",
    "SequenceError",
    "SnapshotError",
    "decode",
    "problem",
]
