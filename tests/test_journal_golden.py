"""The golden scenarios through the real journal: sequencer, matcher, output stream.

The matcher must journal exactly the events ``exch simulate`` prints for the same commands.
Left out: scenarios whose behaviour depends on time (an in-play bet delay), as through the
journal their times are Redis time, not the file's; and the duplicate client ref, which the
sequencer itself refuses to sequence (tests/test_journal.py), so the core never sees it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from exchange.commands import decode
from journal.keys import Keys
from journal.sequencer import Sequencer
from tools.sources.commandfile import read_commands

from .conftest import GOLDEN
from .journal_helpers import matcher_thread, output_lines, wait_caught_up

SEQUENCER_DEDUPS = {"16_duplicate_ref.in.jsonl"}
TIMELESS = [
    p
    for p in sorted(GOLDEN.glob("*.in.jsonl"))
    if '"ts"' not in p.read_text() and p.name not in SEQUENCER_DEDUPS
]


def test_most_scenarios_are_timeless() -> None:
    assert len(TIMELESS) >= 25


@pytest.mark.parametrize("scenario", TIMELESS, ids=lambda p: p.name.removesuffix(".in.jsonl"))
def test_journal_reproduces_golden(scenario: Path, redis_server) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    with scenario.open() as f:
        objs = [obj for _, obj in read_commands(f)]
    # What exch submit sends: the commands decoded at the edge; invalid objects are sent in
    # their stream form as they are, as a foreign writer would, so the matcher rejects them.
    cmds = [decode(obj, 0, 0) for obj in objs]
    # golden files keep their rules version: 1 (a new journal would start under the newest)
    client.hset(Keys().settings, "rules", 1)
    with matcher_thread(client):
        sequencer = Sequencer(client)
        seqs = []
        for obj, cmd in zip(objs, cmds):
            if cmd[0] == "invalid":
                seqs.append(_append_foreign(client, obj))
            else:
                seqs.extend(sequencer.submit_batch([cmd]))
        assert seqs == list(range(1, len(objs) + 1))
        wait_caught_up(client)
    expected = scenario.with_name(scenario.name.replace(".in.", ".out.")).read_text()
    assert "".join(line + "\n" for line in output_lines(client)) == expected


def _append_foreign(client, obj) -> int:  # type: ignore[no-untyped-def]
    import msgpack

    from journal.keys import Keys
    from journal.streams import last_id, parse_id

    seq = parse_id(last_id(client, Keys().input))[0] + 1
    client.xadd(Keys().input, {"ts": 0, "c": msgpack.packb(obj)}, id=f"{seq}-0")
    return seq
