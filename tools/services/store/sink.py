"""The store's sink: one partition's answers into PostgreSQL rows, exactly once.

A batch of answers becomes rows in Python first (appends to plain lists; an order's changes
summed per order), then goes in with ``COPY`` (new rows) and one set-based ``UPDATE`` per
table (changes to orders and balances, staged in temporary tables), all in one transaction
with the partition's new position (``exch.positions``). So the store holds a batch whole or
not at all, a restart resumes after the position, and an answer delivered again is skipped.
One writer per partition and database: a session advisory lock, taken at the start.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from journal import faults
from journal.wire import Entry

from .schema import ensure_schema

LAPSED = frozenset({"LAPSE", "MARKET_CLOSED"})
"""Cancellation reasons that count as lapsed (the exchange took the stake off), not
cancelled (the owner, or the order's own terms, did)."""


class StoreBusy(Exception):
    """Another ``exch store`` writes this partition to this database."""


def lock_key(partition: int) -> int:
    """The advisory lock of one partition's writer."""
    return zlib.crc32(b"exch-store") * 10_000 + partition


class StoreSink:
    """Writes one partition's answers to the store (see the module docstring)."""

    def __init__(self, conn: Any, partition: int) -> None:
        """``conn`` in autocommit mode: each batch is its own transaction."""
        self.conn = conn
        self.partition = partition
        ensure_schema(conn)
        got = conn.execute("SELECT pg_try_advisory_lock(%s)", (lock_key(partition),)
                           ).fetchone()[0]
        if not got:
            raise StoreBusy(f"another exch store writes partition {partition} to this "
                            "database")
        row = conn.execute("SELECT seq FROM exch.positions WHERE partition = %s",
                           (partition,)).fetchone()
        self._committed = int(row[0]) if row else 0
        self.rows = 0
        """Rows written by this sink (for the benchmark)."""

    def committed_seq(self) -> int:
        return self._committed

    def write(self, entries: Sequence[Entry]) -> int:
        batch = _Batch(self.partition)
        last = self._committed
        for seq, ts, events in entries:
            if seq <= last:
                continue  # already in the store: a redelivery changes nothing
            batch.add(ts, events)
            last = seq
        if last == self._committed:
            return last
        with self.conn.transaction():
            self.rows += batch.commit(self.conn)
            faults.reached("store.committing")  # killed here: the transaction never was
            self.conn.execute(
                "INSERT INTO exch.positions VALUES (%s, %s) ON CONFLICT (partition) "
                "DO UPDATE SET seq = EXCLUDED.seq", (self.partition, last))
        self._committed = last
        return last

    def close(self) -> None:
        self.conn.close()


class _Batch:
    """The rows of a batch of answers, by table."""

    def __init__(self, partition: int) -> None:
        self.p = partition
        self.new: dict[int, list[Any]] = {}
        """Orders accepted in this batch, as their rows (amounts included)."""
        self.cancellations: list[tuple] = []
        self.trades: list[tuple] = []
        self.rejections: list[tuple] = []
        self.settlements: list[tuple] = []
        self.ledger: list[tuple] = []
        self.history: list[tuple] = []
        self.markets: list[tuple[str, tuple]] = []
        self.changes: dict[int, list[int]] = {}
        """order id -> [matched, matched value, cancelled, lapsed, last seq]"""
        self.balances: dict[str, tuple[int, int]] = {}

    def _change(self, order: int, k: int, amount: int, seq: int) -> None:
        new = self.new.get(order)
        if new is not None:  # accepted in this batch: its row goes in with the change
            new[14 + k] += amount
            new[13] = seq
            return
        c = self.changes.get(order)
        if c is None:
            c = self.changes[order] = [0, 0, 0, 0, seq]
        c[k] += amount
        c[4] = seq

    def add(self, ts: int, events: list[dict[str, Any]]) -> None:
        p = self.p
        seq = idx = -1
        for e in events:
            s = e["seq"]
            if s == seq:
                idx += 1
            else:
                seq, idx = s, 0
            t = e["type"]
            if t == "trade":
                price, size, tid = e["price"], e["size"], e["trade"]
                bo, lo = e["back_order"], e["lay_order"]
                self.trades.append((tid, p, seq, ts, e["market"], e["runner"], price, size, bo,
                                    lo, e["back_account"], e["lay_account"], e["taker"]))
                for o in (bo, lo):
                    self._change(o, 0, size, seq)
                    self._change(o, 1, size * price, seq)
            elif t == "order_accepted":
                o = e["order"]
                self.new[o] = [o, p, e["account"], e["market"], e["runner"], e["side"],
                               e["price"], e["stake"], e["tif"], e["persistence"], e["ref"],
                               seq, ts, seq, 0, 0, 0, 0]
            elif t == "order_cancelled":
                o, size, reason = e["order"], e["size"], e["reason"]
                self._change(o, 3 if reason in LAPSED else 2, size, seq)
                self.cancellations.append((o, seq, idx, ts, size, e["price"], reason))
            elif t == "order_rejected":
                self.rejections.append((p, seq, idx, ts, e["command"], e["account"],
                                        e["market"], e["ref"], e["order"], e["reason"]))
            elif t == "funds_changed":
                amount, balance, account = e["amount"], e["balance"], e["account"]
                kind = "deposit" if amount > 0 else "withdrawal"
                self.ledger.append((p, seq, idx, kind, ts, account, amount, balance, None, None))
                self.balances[account] = (balance, seq)
            elif t == "transfer_out" or t == "transfer_in":
                account, balance = e["account"], e["balance"]
                self.ledger.append((p, seq, idx, t, ts, account, e["amount"], balance, None,
                                    e["transfer"]))
                self.balances[account] = (balance, seq)
            elif t == "account_settled":
                account, market, balance = e["account"], e["market"], e["balance"]
                pnl, commission = e["pnl"], e["commission"]
                self.settlements.append((p, seq, idx, ts, account, market, pnl, commission,
                                         balance))
                self.ledger.append((p, seq, idx, "settlement", ts, account, pnl,
                                    balance + commission, market, None))
                if commission:
                    self.ledger.append((p, seq, idx, "commission", ts, account, -commission,
                                        balance, market, None))
                self.balances[account] = (balance, seq)
            elif t == "market_created":
                market = e["market"]
                self.markets.append(("create", (
                    p, market, seq, list(e["runners"]), Decimal(e["commission"]) / 100,
                    e["min_stake"], e["winners"], e["bet_delay_ms"], "OPEN", False, ts)))
                self.history.append((p, seq, idx, ts, market, t, "OPEN", False, None, None))
            elif t == "market_status_changed":
                market, status, in_play = e["market"], e["status"], e["in_play"]
                self.markets.append(("status", (status, in_play, p, market, p, market)))
                self.history.append((p, seq, idx, ts, market, t, status, in_play, None, None))
            elif t == "market_settled":
                market, void = e["market"], e["void"]
                result = list(e["winners"])
                status = "VOIDED" if void else "SETTLED"
                self.markets.append(("settle", (status, result, void, e["commission"], p,
                                                market, p, market)))
                self.history.append((p, seq, idx, ts, market, t, status, None, result, void))
            else:
                raise ValueError(f"seq {seq}: unknown event type {t!r}")

    def commit(self, conn: Any) -> int:
        """Write every row (inside the caller's transaction); returns how many."""
        copy = _copier(conn)
        copy("orders", "order_id, partition, account, market, runner, side, price_hundredths, "
             "stake_pence, tif, persistence, ref, placed_seq, ts_ms, updated_seq, "
             "matched_pence, matched_value, cancelled_pence, lapsed_pence", self.new.values())
        copy("cancellations", "order_id, seq, idx, ts_ms, size_pence, price_hundredths, reason",
             self.cancellations)
        copy("trades", "trade, partition, seq, ts_ms, market, runner, price_hundredths, "
             "size_pence, back_order, lay_order, back_account, lay_account, taker",
             self.trades)
        copy("rejections", "partition, seq, idx, ts_ms, command, account, market, ref, "
             "order_id, reason", self.rejections)
        copy("settlements", "partition, seq, idx, ts_ms, account, market, pnl_pence, "
             "commission_pence, balance_pence", self.settlements)
        copy("ledger", "partition, seq, idx, kind, ts_ms, account, amount_pence, balance_pence, "
             "market, transfer", self.ledger)
        copy("market_history", "partition, seq, idx, ts_ms, market, type, status, in_play, "
             "result, void", self.history)
        for op, args in self.markets:
            conn.execute(_MARKET_SQL[op], args)
        if self.changes:
            conn.execute("CREATE TEMP TABLE IF NOT EXISTS order_changes (order_id bigint, "
                         "matched bigint, value numeric(38, 0), cancelled bigint, "
                         "lapsed bigint, seq bigint) ON COMMIT DELETE ROWS")
            with conn.cursor().copy("COPY order_changes FROM STDIN") as cp:
                for order, c in self.changes.items():
                    cp.write_row((order, *c))
            conn.execute(
                "UPDATE exch.orders o SET matched_pence = o.matched_pence + c.matched, "
                "matched_value = o.matched_value + c.value, "
                "cancelled_pence = o.cancelled_pence + c.cancelled, "
                "lapsed_pence = o.lapsed_pence + c.lapsed, updated_seq = c.seq "
                "FROM order_changes c WHERE o.order_id = c.order_id")
        if self.balances:
            conn.execute("CREATE TEMP TABLE IF NOT EXISTS balance_changes (account text, "
                         "balance bigint, seq bigint) ON COMMIT DELETE ROWS")
            with conn.cursor().copy("COPY balance_changes FROM STDIN") as cp:
                for account, (balance, seq) in self.balances.items():
                    cp.write_row((account, balance, seq))
            conn.execute(
                "INSERT INTO exch.balances SELECT %s, account, balance, seq FROM "
                "balance_changes ON CONFLICT (partition, account) DO UPDATE SET "
                "balance_pence = EXCLUDED.balance_pence, updated_seq = EXCLUDED.updated_seq",
                (self.p,))
        return (len(self.new) + len(self.cancellations) + len(self.trades)
                + len(self.rejections) + len(self.settlements) + len(self.ledger)
                + len(self.history) + len(self.changes) + len(self.balances))


def _copier(conn: Any) -> Any:
    cursor = conn.cursor()

    def copy(table: str, columns: str, rows: Any) -> None:
        if not rows:
            return
        with cursor.copy(f"COPY exch.{table} ({columns}) FROM STDIN") as cp:
            write = cp.write_row
            for row in rows:
                write(row)

    return copy


_CURRENT = ("created_seq = (SELECT max(created_seq) FROM exch.markets WHERE partition = %s "
            "AND market = %s)")
_MARKET_SQL = {
    "create": "INSERT INTO exch.markets (partition, market, created_seq, runners, "
              "commission_rate, min_stake_pence, winners, bet_delay_ms, status, in_play, ts_ms) "
              "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
    "status": "UPDATE exch.markets SET status = %s, in_play = %s WHERE partition = %s AND "
              f"market = %s AND {_CURRENT}",
    "settle": "UPDATE exch.markets SET status = %s, result = %s, void = %s, "
              "commission_pence = %s WHERE partition = %s AND market = %s AND " + _CURRENT,
}
"""A market's row: created once (a forgotten market's id may come back: a new row), then
its current row (the newest of that id) changes."""
