"""API keys: who a gateway caller is.

A key is ``exch_<id>_<secret>``: ``id`` (12 hex digits) names its record, ``secret`` (32
random bytes, URL-safe base64) proves it. The record, in the Redis hash ``exch:apikeys``
under the id, holds the SHA-256 of the secret, never the secret: whoever reads Redis cannot
call the gateway with it. A plain hash (not a slow password hash) is enough because the
secret is 256 random bits, not something a person chose: there is nothing to guess.

Each key is bound to one account (its holder can place, cancel and see only that account's
orders and money), or is an operator key (market administration and deposits, no account).
A revoked key keeps its record, marked with the time it was revoked, so that ``exch keys
list`` still shows who had it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import asdict, dataclass

import redis

from exchange.commands import problem
from exchange.errors import InputError

APIKEYS = "exch:apikeys"
"""The hash of key records: key id -> JSON (``KeyRecord``)."""

OPERATOR = "operator"
ACCOUNT = "account"


@dataclass(frozen=True)
class KeyRecord:
    """What is stored for one key."""

    id: str
    role: str
    """``account`` or ``operator``."""
    account: str | None
    secret_sha256: str
    created_ms: int
    label: str = ""
    revoked_ms: int | None = None

    @property
    def active(self) -> bool:
        return self.revoked_ms is None


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split_key(key: str) -> tuple[str, str] | None:
    """(id, secret) of a key in the ``exch_<id>_<secret>`` form, else None."""
    if not key.startswith("exch_") or len(key) > 200:
        return None
    rest = key[5:]
    key_id, sep, secret = rest.partition("_")
    if not sep or len(key_id) != 12 or not secret:
        return None
    try:
        int(key_id, 16)
    except ValueError:
        return None
    return key_id, secret


class KeyStore:
    """Creates, revokes, lists and checks API keys (``exch:apikeys``)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def create(self, account: str | None, *, operator: bool = False, label: str = ""
               ) -> tuple[str, KeyRecord]:
        """A new key: for ``account``, or the operator's (``operator``, no account). Returns
        the key itself (shown once, never stored) and its record."""
        if operator:
            if account is not None:
                raise InputError("an operator key is bound to no account")
        else:
            bad = problem({"type": "deposit", "account": account, "amount": "1"})
            if account is None or bad is not None:
                raise InputError(f"not an account id: {account!r}"
                                 + (f" ({bad[1]})" if bad else ""))
        while True:
            key_id = secrets.token_hex(6)
            secret = secrets.token_urlsafe(32)
            record = KeyRecord(key_id, OPERATOR if operator else ACCOUNT, account,
                               _digest(secret), int(time.time() * 1000), label)
            if self.client.hsetnx(APIKEYS, key_id, json.dumps(asdict(record))):
                return f"exch_{key_id}_{secret}", record

    def get(self, key_id: str) -> KeyRecord | None:
        """The record of ``key_id``, if there is one."""
        raw = self.client.hget(APIKEYS, key_id)
        return _record(raw) if raw is not None else None

    def revoke(self, key_id: str) -> KeyRecord:
        """Mark the key revoked (from now; the gateway stops honouring it within
        ``Authenticator.TTL`` seconds). Revoking a revoked key keeps its first revocation."""
        record = self.get(key_id)
        if record is None:
            raise InputError(f"no API key with id {key_id!r} (see `exch keys list`)")
        if record.active:
            record = KeyRecord(**{**asdict(record), "revoked_ms": int(time.time() * 1000)})
            self.client.hset(APIKEYS, key_id, json.dumps(asdict(record)))
        return record

    def list(self) -> list[KeyRecord]:
        """Every key's record, oldest first."""
        records = [_record(v) for v in self.client.hgetall(APIKEYS).values()]
        return sorted(records, key=lambda r: (r.created_ms, r.id))


def _record(raw: bytes | str) -> KeyRecord:
    return KeyRecord(**json.loads(raw))


@dataclass(frozen=True)
class Caller:
    """Who made a request: the key's id, and its account (None for the operator)."""

    key_id: str
    account: str | None

    @property
    def operator(self) -> bool:
        return self.account is None


class Authenticator:
    """Checks presented keys against their records, cached for ``TTL`` seconds (one Redis
    read per key and interval, not per request)."""

    TTL = 1.0
    """Seconds a record is trusted before it is read again: how long a revocation takes."""

    def __init__(self, store: KeyStore) -> None:
        self.store = store
        self._cache: dict[str, tuple[float, KeyRecord | None]] = {}

    def caller(self, key: str) -> Caller | None:
        """The caller a key proves, or None (malformed, unknown, revoked or wrong secret)."""
        parts = split_key(key)
        if parts is None:
            return None
        key_id, secret = parts
        now = time.monotonic()
        cached = self._cache.get(key_id)
        if cached is None or now - cached[0] > self.TTL:
            if len(self._cache) > 100_000:  # unknown ids must not grow it without bound
                self._cache.clear()
            cached = (now, self.store.get(key_id))
            self._cache[key_id] = cached
        record = cached[1]
        if record is None or not record.active:
            return None
        if not hmac.compare_digest(_digest(secret), record.secret_sha256):
            return None
        return Caller(key_id, record.account)
