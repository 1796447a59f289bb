"""A TCP proxy to an IMAP server that makes copies of different users meet.

Each user's first APPEND is held until ``parties`` different users have sent one; after that
every byte passes. With workers that run one task at a time, copies that were all appending at
the same moment ran on different workers, whatever order the scheduler queued them in. If they
never meet within ``timeout``, the held APPENDs go through and :attr:`AppendRendezvous.met`
stays false, so the test that relies on it fails with that fact instead of hanging.
"""

from __future__ import annotations

import re
import socket
import threading

from harness.forwarding import ForwardingProxy, close_sockets

# ``a1 LOGIN "user" ...`` or ``a1 LOGIN user*master ...``: the user, without a master suffix.
_LOGIN = re.compile(rb'^\S+ LOGIN "?([^"\s*]+)', re.IGNORECASE | re.MULTILINE)
_APPEND = re.compile(rb"^\S+ APPEND ", re.IGNORECASE | re.MULTILINE)


class AppendRendezvous(ForwardingProxy):
    """Forwards ``127.0.0.1:port`` to ``target_host:target_port``.

    :param parties: how many different users must be appending before any APPEND goes through.
    :param timeout: seconds an APPEND is held at most.
    """

    def __init__(
        self, target_host: str, target_port: int, parties: int = 2, timeout: float = 90
    ) -> None:
        self.parties, self.timeout = parties, timeout
        self.arrivals: list[str] = []  # users, in the order their first APPEND arrived
        self.met = False  # whether ``parties`` users were ever held at the same time
        self._waiting: dict[str, int] = {}  # user -> connections held now
        self._ready = threading.Condition()
        super().__init__(target_host, target_port)

    def upstream(self, client: socket.socket, server: socket.socket) -> None:
        user: bytes | None = None
        waited = False
        try:
            while data := client.recv(65536):
                if user is None and (login := _LOGIN.search(data)):
                    user = login.group(1)
                if user is not None and not waited and _APPEND.search(data):
                    self._arrive(user.decode())
                    waited = True
                server.sendall(data)
        except OSError:
            pass
        finally:
            close_sockets(client, server)

    def _arrive(self, user: str) -> None:
        """Wait until ``parties`` users wait here together (then the way stays open), or time out
        (a party that gave up no longer counts)."""
        with self._ready:
            if user not in self.arrivals:
                self.arrivals.append(user)
            self._waiting[user] = self._waiting.get(user, 0) + 1
            if len(self._waiting) >= self.parties:
                self.met = True
                self._ready.notify_all()
            self._ready.wait_for(lambda: self.met, self.timeout)
            self._waiting[user] -= 1
            if not self._waiting[user]:
                del self._waiting[user]
