"""Shared test options and fixtures.

``--update-golden`` rewrites the expected events of the golden scenarios in fixtures/golden
from what the core does now; review the diff, it is the behaviour change.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "fixtures" / "golden"


def golden_settings(scenario: Path) -> dict[str, int]:
    """A golden scenario's rules version and partition: from ``NN_name.settings.json`` beside
    it if there is one (``{"rules": 6, "partition": 1}``), else rules 1 in partition 0, as
    ``exch simulate`` judges by default."""
    import json

    path = scenario.with_name(scenario.name.replace(".in.jsonl", ".settings.json"))
    settings = {"rules": 1, "partition": 0}
    if path.exists():
        settings.update(json.loads(path.read_text(encoding="utf-8")))
    return settings


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        help="rewrite fixtures/golden/*.out.jsonl from the current behaviour",
    )


def pytest_sessionstart(session: pytest.Session) -> None:
    """Refuse to test a compiled core older than its source: it is not the code under test.
    Give the tests an exchange folder of their own: never the user's embedded server."""
    import os
    import tempfile

    import exchange

    os.environ["EXCH_HOME"] = tempfile.mkdtemp(prefix="exch-tests-")
    os.environ.pop("EXCH_REDIS_URL", None)
    os.environ.pop("EXCH_ARCHIVE", None)

    stale = exchange._stale_builds()
    if stale:
        pytest.exit(
            "the compiled core is older than " + ", ".join(stale)
            + ": rebuild it with `pip install -e .` or `python setup.py build_ext --inplace`",
            returncode=2,
        )


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Stop an embedded server a test started in the tests' own folder, and remove it."""
    import os
    import shutil

    from journal.server import stop_embedded
    from tools.services.store.server import stop_embedded as stop_embedded_postgres

    home = os.environ.get("EXCH_HOME", "")
    if "exch-tests-" in home:
        stop_embedded(home)
        stop_embedded_postgres(home)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


# ----------------------------------------------------------------------------- real Redis


class RedisProcess:
    """A private redis-server for one test: real, on a free loopback port, append-only in a
    temporary folder. ``kill()`` is SIGKILL; ``start()`` brings it back on the same port and
    data, as after a crash."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port: int | None = None
        self.info = None

    def start(self) -> None:
        from journal.server import start_server

        self.info = start_server(self.folder, port=self.port, daemonize=False)
        self.port = self.info.port

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self, **kwargs):  # type: ignore[no-untyped-def]
        from journal.connection import connect

        return connect(self.url, **kwargs)

    def kill(self) -> None:
        import os
        import signal

        from journal.server import info_proc

        assert self.info is not None
        os.kill(self.info.pid, signal.SIGKILL)
        proc = info_proc.pop(self.info.pid, None)
        if proc is not None:
            proc.wait()

    def stop(self) -> None:
        from journal.server import stop_pid

        if self.info is not None:
            stop_pid(self.info.pid, timeout=10)


@pytest.fixture
def redis_server(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A fresh, real redis-server for this test."""
    server = RedisProcess(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()
