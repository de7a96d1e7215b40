"""A TCP proxy in front of Redis that can drop a connection at the worst moment.

When a request from a client contains ``trigger`` (say, the SHA of the commit script), the
proxy forwards it to Redis, lets Redis run it, and then closes the client's connection
without passing the reply on: the client sees a dropped connection for a command that was
applied, and redis-py retries it. That is the fault the journal's scripts must absorb.
"""

from __future__ import annotations

import socket
import threading
import time


class FlakyProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.triggers: list[bytes] = []
        self.drops_left = 0
        self.dropped = 0
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def drop_after(self, *triggers: bytes, times: int) -> None:
        """Drop the connection after forwarding a request containing any trigger, ``times``
        times in all."""
        with self._lock:
            self.triggers = list(triggers)
            self.drops_left = times

    def close(self) -> None:
        self._closed = True
        self.listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            muted = threading.Event()  # set: replies on this connection are swallowed
            threading.Thread(target=self._pump, args=(client, upstream, muted, True),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, muted, False),
                             daemon=True).start()

    def _pump(
        self, src: socket.socket, dst: socket.socket, muted: threading.Event, from_client: bool
    ) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if from_client:
                    drop = self._should_drop(data)
                    if drop:
                        muted.set()
                    dst.sendall(data)
                    if drop:
                        time.sleep(0.2)  # Redis runs the command; its reply is never relayed
                        break
                else:
                    if muted.is_set():
                        break
                    dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def _should_drop(self, data: bytes) -> bool:
        with self._lock:
            if self.drops_left > 0 and any(t in data for t in self.triggers):
                self.drops_left -= 1
                self.dropped += 1
                return True
        return False
