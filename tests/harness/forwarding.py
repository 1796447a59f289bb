"""The one forwarding core of the harness's TCP proxies (:mod:`harness.proxy`,
:mod:`harness.hostile`, :mod:`harness.rendezvous`, :mod:`harness.gmail_sim`).

A :class:`ForwardingProxy` listens on a free port of 127.0.0.1, connects every client it accepts
to ``target`` and runs one thread per direction: :meth:`~ForwardingProxy.upstream` (client to
server) and :meth:`~ForwardingProxy.downstream` (server to client), which copy bytes until either
side closes. The proxies differ only in what those two do with the bytes on the way.
"""

from __future__ import annotations

import socket
import threading

from harness.dovecot import free_port


class ForwardingProxy:
    """Forwards ``127.0.0.1:port`` to ``target_host:target_port`` (see the module docstring).

    Every socket of every connection is tracked, so :meth:`close` (and :meth:`cut_all`) end them
    all at once, also with threads blocked in ``recv``.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.host = "127.0.0.1"
        self.port = free_port()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._closed = threading.Event()
        self._listener = socket.create_server((self.host, self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def upstream(self, client: socket.socket, server: socket.socket) -> None:
        """What the client sends, to the server."""
        pump(client, server)

    def downstream(self, server: socket.socket, client: socket.socket) -> None:
        """What the server sends, to the client."""
        pump(server, client)

    def cut_all(self) -> None:
        """Close every connection now (the listener stays open)."""
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        close_sockets(*sockets)

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        self.cut_all()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
            threading.Thread(target=self.upstream, args=(client, server), daemon=True).start()
            threading.Thread(target=self.downstream, args=(server, client), daemon=True).start()


def pump(source: socket.socket, sink: socket.socket) -> None:
    """Copy ``source`` to ``sink`` until either closes; then close both."""
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        close_sockets(source, sink)


def close_sockets(*sockets: socket.socket) -> None:
    """Shut down (the peer sees the end at once, also with a thread blocked in recv) and close."""
    for sock in sockets:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()
