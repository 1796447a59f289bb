"""A TCP proxy on loopback that cuts every connection through it at a chosen point.

Tests put it between the engine and a Dovecot server and arm it to drop all connections once a
given number of bytes has passed (in either direction), which interrupts a pass anywhere: in a
listing, in the middle of a literal, between an APPEND and its tagged OK.
"""

from __future__ import annotations

import socket
import threading

from harness.dovecot import free_port


class CuttingProxy:
    """Forwards ``127.0.0.1:port`` to ``target``; :meth:`arm` schedules one cut.

    :param target_host: the server's address; :param target_port: its port.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.host = "127.0.0.1"
        self.port = free_port()
        self.cuts = 0
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._budget: int | None = None
        self._pattern: tuple[bytes, int] | None = None
        self._listener = socket.create_server((self.host, self.port))
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self, after_bytes: int) -> None:
        """Cut every open connection once ``after_bytes`` more bytes have passed; then disarm."""
        with self._lock:
            self._budget = after_bytes

    def arm_on_reply(self, pattern: bytes, occurrence: int = 1) -> None:
        """Cut every connection when the server sends ``pattern`` for the ``occurrence``-th time,
        withholding that reply: the server has done the command, the client never hears of it."""
        with self._lock:
            self._pattern = (pattern, occurrence)

    def disarm(self) -> None:
        with self._lock:
            self._budget = None
            self._pattern = None

    @property
    def armed(self) -> bool:
        return self._budget is not None

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        self._cut_all()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets |= {client, server}
            for a, b, from_server in ((client, server, False), (server, client, True)):
                threading.Thread(target=self._pump, args=(a, b, from_server), daemon=True).start()

    def _withheld(self, data: bytes) -> bool:
        with self._lock:
            if self._pattern is None or self._pattern[0] not in data:
                return False
            pattern, left = self._pattern
            if left > 1:
                self._pattern = (pattern, left - 1)
                return False
            self._pattern = None
            self.cuts += 1
        return True

    def _pump(self, source: socket.socket, sink: socket.socket, from_server: bool) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if from_server and self._withheld(data):
                    self._cut_all()
                    return
                with self._lock:
                    budget = self._budget
                    if budget is not None and len(data) >= budget:
                        data, cut = data[:budget], True
                    else:
                        cut = False
                        if budget is not None:
                            self._budget = budget - len(data)
                if data:
                    sink.sendall(data)
                if cut:
                    with self._lock:
                        self._budget = None
                        self.cuts += 1
                    self._cut_all()
                    return
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _cut_all(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for s in sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
