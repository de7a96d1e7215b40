"""A minimal client of a running gateway, from the standard library only (``exch demo`` and
``exch bench gateway`` run on an install without the test dependencies): JSON calls with an
API key, and waiting for a gateway process to serve."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from typing import Any


def call(base: str, method: str, path: str, key: str | None = None, body: Any = None,
         timeout: float = 60.0) -> dict[str, Any]:
    """``method path`` on the gateway at ``base`` with ``body`` as JSON; the JSON answer.
    A 4xx or 5xx raises ``urllib.error.HTTPError``."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if key is not None:
        request.add_header("Authorization", f"Bearer {key}")
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        return json.loads(answer.read())  # type: ignore[no-any-return]


def wait_serving(base: str, proc: subprocess.Popen, seconds: float) -> None:
    """Return once the gateway ``proc`` answers ``/v1/health`` with 200 at ``base``; raise
    ``RuntimeError`` if it exits or does not within ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"exch gateway exited with {proc.returncode}")
        try:
            call(base, "GET", "/v1/health", timeout=2)
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"exch gateway did not start within {seconds:g} s")
        time.sleep(0.05)
