"""A loopback IMAP proxy that rewrites whole server responses: a hostile or broken server.

Put between the engine and a real server, it reads what the server sends one complete response
at a time (a line and the literals it announces) and hands each to ``rewrite``, which returns the
bytes to send instead, or a :class:`Cut` to send a prefix and close the connection (a server
that dies in the middle of a literal). What clients send passes unchanged; every byte of it is
kept in :attr:`RewritingProxy.to_server`, so a test can prove a command was never sent.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from dataclasses import dataclass

from harness.forwarding import ForwardingProxy, close_sockets

_LITERAL_END = re.compile(rb"\{(\d+)\}\r\n$")


@dataclass(frozen=True)
class Cut:
    """Send ``prefix``, then end the stream (the server is gone)."""

    prefix: bytes


Rewrite = Callable[[bytes], "bytes | Cut"]


def read_response(stream) -> bytes:
    """One complete server response from a buffered socket file: its lines and literals."""
    out = bytearray()
    while True:
        line = stream.readline()
        if not line:
            raise EOFError
        out += line
        match = _LITERAL_END.search(line)
        if match is None:
            return bytes(out)
        out += stream.read(int(match.group(1)))


class RewritingProxy(ForwardingProxy):
    """Forwards ``127.0.0.1:port`` to ``target``, passing each server response through
    ``rewrite`` (``None``: unchanged). :attr:`rewrites` counts the responses it changed."""

    def __init__(self, target_host: str, target_port: int, rewrite: Rewrite | None = None):
        self.rewrite = rewrite
        self.rewrites = 0
        self.to_server = bytearray()
        super().__init__(target_host, target_port)

    def upstream(self, client: socket.socket, server: socket.socket) -> None:
        try:
            while data := client.recv(65536):
                with self._lock:
                    self.to_server += data
                server.sendall(data)
        except OSError:
            pass
        close_sockets(client, server)

    def downstream(self, server: socket.socket, client: socket.socket) -> None:
        stream = server.makefile("rb")
        try:
            while True:
                response = read_response(stream)
                changed = self.rewrite(response) if self.rewrite else response
                if changed != response:
                    with self._lock:
                        self.rewrites += 1
                if isinstance(changed, Cut):
                    client.sendall(changed.prefix)
                    # The end of the stream, not a reset: a reset would throw away what the
                    # client has not read yet, so it would meet the cut somewhere earlier.
                    client.shutdown(socket.SHUT_WR)
                    server.close()
                    return  # upstream closes the client's socket once the client hangs up
                client.sendall(changed)
        except (OSError, EOFError, ValueError):
            pass
        close_sockets(client, server)
