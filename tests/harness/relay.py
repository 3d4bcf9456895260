"""A TCP relay in the test process, between a database client and its server: each connection
to the relay's address is joined to one of its own to 127.0.0.1:`target`, and bytes are copied
both ways until either side closes. It can lose one reply for real: the server's answer is
dropped and the client's connection reset, as when a network fails after a request got through
(a COMMIT that committed, its acknowledgement never seen).
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class _End:
    peer: socket.socket
    from_server: bool


class Relay:
    def __init__(self, address: str, target: int, port: int = 0) -> None:
        self.target = target
        self.listener = socket.create_server((address, port))
        self.address = address
        self.port = self.listener.getsockname()[1]
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ, None)
        self.closing = False
        self.lose_reply = threading.Event()
        self.replies_lost = 0
        self.thread = threading.Thread(target=self._serve, name="relay", daemon=True)
        self.thread.start()

    def lose_next_reply(self) -> None:
        """The next bytes any server sends are dropped, and that client's connection reset."""
        self.lose_reply.set()

    def _serve(self) -> None:
        while not self.closing:
            for key, _ in self.selector.select(timeout=0.2):
                if key.data is None:
                    self._accept()
                else:
                    self._copy(key.fileobj, key.data)  # type: ignore[arg-type]

    def _accept(self) -> None:
        client, _ = self.listener.accept()
        try:
            server = socket.create_connection(("127.0.0.1", self.target))
        except OSError:
            client.close()
            return
        self.selector.register(client, selectors.EVENT_READ, _End(server, from_server=False))
        self.selector.register(server, selectors.EVENT_READ, _End(client, from_server=True))

    def _copy(self, source: socket.socket, end: _End) -> None:
        try:
            data = source.recv(65536)
        except OSError:
            data = b""
        if data and end.from_server and self.lose_reply.is_set():
            self.lose_reply.clear()
            self.replies_lost += 1
            # SO_LINGER 0: close with a reset, as a broken path ends for the client.
            end.peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            data = b""
        if data:
            with contextlib.suppress(OSError):
                # A short blocking send: the client's side may be cut, its window full.
                end.peer.settimeout(30)
                end.peer.sendall(data)
                return
        for sock in (source, end.peer):
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(sock)
            sock.close()

    def close(self) -> None:
        self.closing = True
        self.thread.join(timeout=5)
        for key in list(self.selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        self.selector.close()
