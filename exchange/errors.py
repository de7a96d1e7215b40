"""Every error ``exch`` raises on purpose, in one tree.

Input the exchange can judge never raises: a bad command becomes an ``order_rejected`` event
with a stable reason code. What is left are the errors below: a journal or a file that is not
what it should be, a service that cannot go on, a request that makes no sense. Each carries
the exit code the command line gives it: 1 for a check that failed, 2 for bad usage or input.
The tree (the module that raises each one in brackets)::

    ExchError                      exit 1: a check failed, or something cannot go on
    ├── InputError                 exit 2: bad usage or bad input
    │   ├── BadLine                a line of a command file that is not JSON [tools.sources]
    │   ├── ReplayError            no such snapshot, or a range that does not exist [journal]
    │   └── SigningKeyError        a snapshot signing key missing, unreadable, or readable
    │                              by others [journal.signing]
    ├── SequenceError              a seq that does not follow the last one: a broken journal
    │                              [exchange.engine]
    ├── InvariantError             the state broke an invariant: a bug in the core
    │                              [exchange.invariants]
    ├── SnapshotError              bytes that are not a snapshot this version can read
    │                              [exchange.snapshot]
    ├── UntrustedSnapshot          a snapshot asked for by name whose signature is missing,
    │                              by another key, or does not verify [journal.snapshots]
    ├── ServerError                the embedded Redis could not be found, started or reached
    │                              [journal.server]
    ├── JournalError               a journal this version cannot read (a newer layout)
    │   │                          [journal.layout]
    │   ├── Refused                the sequencer refused a call and wrote nothing (also a
    │   │                          ``redis.ResponseError``) [journal.sequencer]
    │   └── ArchiveError           a segment of the archive missing, damaged, or another
    │                              archive's [journal.archive]
    ├── LeaseLost                  another process holds the lease now: stop writing [journal]
    ├── Fenced                     the output does not end where this matcher thought [journal]
    └── SinkError                  an export folder this sink cannot safely continue from
                                   [tools.services.export]

Each also derives from the built-in error it used to be (``ValueError``, ``RuntimeError``,
``AssertionError``), so code that caught those still does. Nothing here does I/O: the core
defines them all so that every layer can import them.
"""

from __future__ import annotations


class ExchError(Exception):
    """The root of every error ``exch`` raises on purpose."""

    exit_code = 1
    """What the command line exits with: 1, a failed check."""


class InputError(ExchError):
    """Bad usage or bad input: the request cannot be carried out as given."""

    exit_code = 2


class SequenceError(ExchError, ValueError):
    """A command whose sequence number is not above the last one applied: the journal is
    broken or the commands are being fed twice. Not an input error: nothing is changed."""


class InvariantError(ExchError, AssertionError):
    """The state broke an invariant: a bug in the core, never a consequence of input."""


class SnapshotError(ExchError, ValueError):
    """Bytes that are not a snapshot this version can read."""


class BadLine(InputError, ValueError):
    """A line of a command file that is not JSON text; says where and why."""

    def __init__(self, source: str, line: int, why: str) -> None:
        super().__init__(f"{source}:{line}: {why}")
        self.source = source
        self.line = line
        self.why = why


class ReplayError(InputError, RuntimeError):
    """The requested snapshot or range does not exist."""


class SigningKeyError(InputError, RuntimeError):
    """A snapshot signing key file that is missing (a reader's public key), unreadable, not
    an Ed25519 key, or (a private key) readable by other users: names the file and the fix."""


class UntrustedSnapshot(ExchError, ValueError):
    """A snapshot asked for by name (``exch replay --from-snapshot SEQ``) that is not signed
    by the trusted key: unsigned, signed by another key, or a signature that does not verify.
    A check that failed (exit 1): anyone who can write Redis can write such a snapshot."""


class ServerError(ExchError, RuntimeError):
    """The embedded Redis server could not be found, started or reached."""


class JournalError(ExchError, RuntimeError):
    """A journal this version cannot read as it is (say, written in a newer layout)."""


class ArchiveError(JournalError):
    """Part of the journal's archive is missing or damaged (names the segment), or the
    archive is not the one the partition was archived to."""


class LeaseLost(ExchError, RuntimeError):
    """Another process holds the lease now: stop writing."""


class Fenced(ExchError, RuntimeError):
    """The output does not end where this matcher thought: someone else wrote it."""


class SinkError(ExchError, RuntimeError):
    """The output folder is not in a state this sink can safely continue from."""


__all__ = [
    "ArchiveError",
    "BadLine",
    "ExchError",
    "Fenced",
    "InputError",
    "InvariantError",
    "JournalError",
    "LeaseLost",
    "ReplayError",
    "SequenceError",
    "ServerError",
    "SigningKeyError",
    "SinkError",
    "SnapshotError",
    "UntrustedSnapshot",
]
