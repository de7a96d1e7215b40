"""The consumer-group framework against a real Redis."""

from __future__ import annotations

from collections.abc import Sequence

from journal.consumer import Entry, GroupConsumer
from journal.keys import Keys
from journal.sequencer import Sequencer
from journal.status import status
from journal.streams import raw
from tools.sources.workload import core_workload

from .journal_helpers import matcher_thread, unnumbered, wait_caught_up

K = Keys()


class ListSink:
    """Keeps entries in memory; idempotent by seq, as every sink must be."""

    def __init__(self) -> None:
        self.entries: list[Entry] = []
        self.writes = 0

    def committed_seq(self) -> int:
        return self.entries[-1][0] if self.entries else 0

    def write(self, entries: Sequence[Entry]) -> int:
        self.writes += 1
        top = self.committed_seq()
        for e in entries:
            assert e[0] > (self.entries[-1][0] if self.entries else 0) or e[0] <= top
            if e[0] > top:
                self.entries.append(e)
        return self.committed_seq()


PER_ENTRY = 10
"""Commands per input entry in these tests (and so per output entry): many entries."""


def fill(client, n: int) -> int:  # type: ignore[no-untyped-def]
    """``n`` workload commands through the matcher, ``PER_ENTRY`` to an entry."""
    cmds = unnumbered(core_workload(n, accounts=100))
    sequencer = Sequencer(client)
    sequencer.BATCH = PER_ENTRY
    with matcher_thread(client, snapshot_every=10**9):
        sequencer.submit(cmds)
        return wait_caught_up(client)


def recorded(client) -> list[tuple[int, int]]:  # type: ignore[no-untyped-def]
    """(seq, number of events) of every seq the output answers."""
    from journal.wire import read_entries

    return [(e[0], len(e[2])) for e in read_entries(raw(client).xrange(K.output))]


def test_every_entry_once_in_order(redis_server) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    last = fill(client, 3000)
    sink = ListSink()
    progress = GroupConsumer(client, "test", sink, batch=70, flush_events=1000).run(follow=False)
    assert [(e[0], len(e[2])) for e in sink.entries] == recorded(client)
    assert progress.committed_seq == last and sink.writes > 1
    st = status(client)
    assert [(g.name, g.pending, g.lag) for g in st.groups] == [("test", 0, 0)]


def test_a_new_group_starts_after_what_the_sink_holds(redis_server) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    fill(client, 1000)
    sink = ListSink()
    sink.entries = [(500, 0, [])]  # as if the sink already held everything up to 500
    GroupConsumer(client, "late", sink).run(follow=False)
    # one entry per answer (entries of PER_ENTRY commands)
    assert [e[0] for e in sink.entries] == [500] + list(range(510, 1001, PER_ENTRY))


def test_pending_entries_of_a_dead_consumer_are_claimed_and_not_doubled(redis_server) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    fill(client, 2000)
    sink = ListSink()

    class Crash(Exception):
        pass

    first = GroupConsumer(client, "g", sink, consumer="dead", batch=50, flush_events=10**9,
                          flush_seconds=10**9)
    # the sink makes a batch durable, then the consumer dies before acknowledging it
    original = first._flush

    def flush_then_die() -> None:
        if first._buffer:
            sink.write(first._buffer)
            raise Crash()
        original()

    first._flush = flush_then_die  # type: ignore[method-assign]
    try:
        first.run(follow=False)
    except Crash:
        pass
    pending = raw(client).xpending(K.output, "g")["pending"]
    assert pending > 0
    second = GroupConsumer(client, "g", sink, consumer="heir", claim_idle_ms=0)
    progress = second.run(follow=False)
    assert progress.claimed == pending
    assert [(e[0], len(e[2])) for e in sink.entries] == recorded(client)
    assert raw(client).xpending(K.output, "g")["pending"] == 0
    names = [c["name"] for c in raw(client).xinfo_consumers(K.output, "g")]
    assert names == [b"heir"]


def test_a_sink_behind_its_group_gets_everything_again(redis_server) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    fill(client, 1500)
    GroupConsumer(client, "g", ListSink()).run(follow=False)
    fresh = ListSink()  # as if the export folder had been deleted: it holds nothing
    GroupConsumer(client, "g", fresh).run(follow=False)
    assert [(e[0], len(e[2])) for e in fresh.entries] == recorded(client)


def test_a_following_consumer_stops_on_request_and_loses_nothing_read_ahead(redis_server) -> None:  # type: ignore[no-untyped-def]
    """The reader thread keeps batches ahead of the sink; stopping at any moment must end
    the run (its thread returns), and whatever was read ahead but not yet held by the sink
    comes again to the next run, once."""
    import threading
    import time

    client = redis_server.client()
    fill(client, 3000)
    sink = ListSink()
    for round_ in range(8):
        consumer = GroupConsumer(client, "f", sink, consumer="same", batch=50 + 37 * round_,
                                 flush_events=200, flush_seconds=10**9)
        runner = threading.Thread(target=consumer.run, kwargs={"follow": True}, daemon=True)
        runner.start()
        time.sleep(0.02 * round_)
        consumer.stopping.set()
        runner.join(timeout=60)  # bounds the wait for a run that ignores the stop
        assert not runner.is_alive(), f"round {round_}: the run did not end 60 s after stop"
    GroupConsumer(client, "f", sink, consumer="same").run(follow=False)
    assert [(e[0], len(e[2])) for e in sink.entries] == recorded(client)
    assert raw(client).xpending(K.output, "f")["pending"] == 0
