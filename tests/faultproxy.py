"""A TCP proxy that breaks on command: S3 outages and server restarts for the tests.

`FaultProxy(upstream_port)` listens on a free port of 127.0.0.1 and forwards every connection to
the upstream server. `outage(seconds)`: for that long, open connections are reset and new ones
are accepted and reset at once, as in front of a dead endpoint. `replace_upstream(port)`: a new
server process behind the same endpoint; connections to the old one are reset. `on_request(match,
nth, action)` runs `action` (e.g. an outage) when the `nth` HTTP request whose request line holds
`match` arrives (e.g. the third shard download), and fails that request.

Runs in this process, one thread per direction per connection: small and test-only.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable


def _reset(sock: socket.socket) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a crashed server's kernel would."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class FaultProxy:
    """Forwards 127.0.0.1:`port` to 127.0.0.1:`upstream`; see the module docstring."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.requests: list[bytes] = []  # request lines seen, in order
        self._lock = threading.Lock()
        self._down_until = 0.0
        self._triggers: list[list] = []  # [match, requests left, action]
        self.fired = 0  # triggers that ran
        self._open: set[socket.socket] = set()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._accept, daemon=True).start()

    def on_request(self, match: str, nth: int, action: Callable[[], None]) -> None:
        """Run `action` at the `nth` request (from now) whose request line holds `match`, and
        fail that request."""
        with self._lock:
            self._triggers.append([match.encode(), nth, action])

    def outage(self, seconds: float) -> None:
        """Fail everything for `seconds`, from now."""
        with self._lock:
            self._down_until = time.monotonic() + seconds
            conns, self._open = list(self._open), set()
        for conn in conns:
            _reset(conn)

    def replace_upstream(self, port: int) -> None:
        """Send new connections to `port`; reset the open ones (their server is gone)."""
        with self._lock:
            self.upstream = port
            conns, self._open = list(self._open), set()
        for conn in conns:
            _reset(conn)

    def down(self) -> bool:
        return time.monotonic() < self._down_until

    def close(self) -> None:
        self._server.close()
        self.outage(0)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return  # closed
            if self.down():
                _reset(client)
                continue
            try:
                server = socket.create_connection(("127.0.0.1", self.upstream), timeout=5)
            except OSError:  # the upstream is not listening (being replaced)
                _reset(client)
                continue
            server.settimeout(None)
            with self._lock:
                self._open |= {client, server}
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, from_client: bool) -> None:
        try:
            while data := src.recv(1 << 16):
                if from_client and self._trips(data):
                    break
                dst.sendall(data)
        except OSError:
            pass
        _reset(src)
        _reset(dst)

    def _trips(self, data: bytes) -> bool:
        """Record the request line of `data`; run a trigger it completes (True: drop it)."""
        line = data.split(b"\r\n", 1)[0]
        if not line.split(b" ", 1)[0].isalpha():
            return False  # the middle of a body, not a request
        with self._lock:
            self.requests.append(line)
            due = []
            for trigger in self._triggers:
                if trigger[0] in line:
                    trigger[1] -= 1
                    if trigger[1] == 0:
                        due.append(trigger[2])
            self._triggers = [t for t in self._triggers if t[1] > 0]
            self.fired += len(due)
        for action in due:
            action()
        return bool(due)
