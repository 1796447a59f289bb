"""A TCP proxy on loopback that breaks the connections through it on purpose.

Tests put it between the engine and a Dovecot server. Faults it can inject:

- :meth:`CuttingProxy.arm`: cut every connection once a given number of bytes has passed;
- :meth:`CuttingProxy.arm_on_reply`: cut when the server sends a pattern, withholding that reply
  (the server did the command, the client never hears of it);
- :meth:`CuttingProxy.schedule`: a seeded schedule of faults at byte offsets of the proxy's whole
  traffic: drops, stalls (forwarding paused for some seconds, so the client's socket timeout
  fires) and cuts inside a literal (in the middle of a message's bytes);
- ``strip_capabilities`` / ``rename_commands``: tamper with the protocol, e.g. hide STARTTLS from
  the CAPABILITY or break the STARTTLS command, as a hostile network path would;
- ``rewrite_requests``: replace bytes in what clients send, e.g. file every APPEND to INBOX into
  another folder, as a misbehaving server or a server-side rule would.

Offsets count every byte forwarded in both directions over all connections, so a schedule drawn
from a seed fires at the same points of the same traffic.
"""

from __future__ import annotations

import random
import re
import socket
import time
from collections import Counter
from dataclasses import dataclass

from harness.forwarding import ForwardingProxy, close_sockets

FAULT_KINDS = ("drop", "stall", "literal")
_TCP_CLOSE = 7  # Linux tcp_states.h: what a connection becomes when the peer resets it
_LITERAL = re.compile(rb"\{(\d+)\+?\}\r\n")


@dataclass(frozen=True)
class Fault:
    """One scheduled fault: ``kind`` (drop, stall, literal) at ``offset`` bytes of traffic."""

    offset: int
    kind: str


class CuttingProxy(ForwardingProxy):
    """Forwards ``127.0.0.1:port`` to ``target``.

    :param target_host: the server's address; :param target_port: its port.
    :param strip_capabilities: capability names removed from everything the server sends.
    :param rename_commands: ``{b"STARTTLS": b"STARTTLX"}``: command names rewritten on their way
        to the server (the server then refuses them as unknown).
    :param rewrite_requests: ``{b' APPEND "INBOX" ': b' APPEND "Junk" '}``: byte strings replaced
        in what clients send (within one read: keep them short).
    :param record: keep every byte clients send in :attr:`to_server` (to look for clear text).
    """

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        strip_capabilities: tuple[bytes, ...] = (),
        rename_commands: dict[bytes, bytes] | None = None,
        rewrite_requests: dict[bytes, bytes] | None = None,
        record: bool = False,
    ) -> None:
        self.cuts = 0
        self.transferred = 0
        self.fired: Counter[str] = Counter()
        self.events: list[str] = []  # the faults as they fired, for a failing test's message
        self.to_server = bytearray()
        self._record = record
        self._strip = strip_capabilities
        self._rename = rename_commands or {}
        self._rewrite = rewrite_requests or {}
        self._budget: int | None = None
        self._pattern: tuple[bytes, int] | None = None
        self._faults: list[Fault] = []
        self._stall_seconds = 0.0
        self._hunting_literal = False
        super().__init__(target_host, target_port)

    # -- arming ------------------------------------------------------------------------------
    def arm(self, after_bytes: int) -> None:
        """Cut every open connection once ``after_bytes`` more bytes have passed; then disarm."""
        with self._lock:
            self._budget = after_bytes

    def arm_on_reply(self, pattern: bytes, occurrence: int = 1) -> None:
        """Cut every connection when the server sends ``pattern`` for the ``occurrence``-th time,
        withholding that reply: the server has done the command, the client never hears of it."""
        with self._lock:
            self._pattern = (pattern, occurrence)

    def schedule(
        self,
        seed: int,
        span: int,
        *,
        drops: int = 0,
        stalls: int = 0,
        literal_cuts: int = 0,
        stall_seconds: float = 2.0,
        start: int = 0,
    ) -> list[Fault]:
        """Arm faults at offsets drawn from ``random.Random(seed)`` in ``[start, start + span)``
        of the traffic still to come (the offsets are relative to what has passed so far).

        :return: the schedule, in the order the faults will fire.
        """
        rng = random.Random(seed)
        kinds = ["drop"] * drops + ["stall"] * stalls + ["literal"] * literal_cuts
        offsets = sorted(rng.sample(range(start, start + span), len(kinds)))
        rng.shuffle(kinds)
        with self._lock:
            base = self.transferred
            self._faults = [Fault(base + o, k) for o, k in zip(offsets, kinds, strict=True)]
            self._stall_seconds = stall_seconds
            return list(self._faults)

    @property
    def pending_faults(self) -> int:
        with self._lock:
            return len(self._faults) + int(self._hunting_literal)

    def disarm(self) -> None:
        with self._lock:
            self._budget = None
            self._pattern = None
            self._faults = []
            self._hunting_literal = False

    @property
    def armed(self) -> bool:
        return self._budget is not None

    def cut(self) -> None:
        """Cut every open connection now (as a server restart does; data held back by a stall
        is not delivered)."""
        with self._lock:
            self.cuts += 1
        self.cut_all()

    # -- forwarding --------------------------------------------------------------------------
    def upstream(self, client: socket.socket, server: socket.socket) -> None:
        self._pump(client, server, from_server=False)

    def downstream(self, server: socket.socket, client: socket.socket) -> None:
        self._pump(server, client, from_server=True)

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

    def _tamper(self, data: bytes, from_server: bool) -> bytes:
        if from_server:
            for name in self._strip:
                data = data.replace(b" " + name, b"")
        else:
            if self._record:
                self.to_server += data
            for name, replacement in self._rename.items():
                data = data.replace(b" " + name + b"\r\n", b" " + replacement + b"\r\n")
            for old, new in self._rewrite.items():
                data = data.replace(old, new)
        return data

    def _plan_chunk(self, data: bytes) -> tuple[int, str | None]:
        """How many bytes of ``data`` to forward, and the fault to inject after them."""
        with self._lock:
            if self._hunting_literal:
                match = _LITERAL.search(data)
                if match is None or int(match.group(1)) < 2:
                    self.transferred += len(data)
                    return len(data), None
                inside = min(int(match.group(1)) // 2, len(data) - match.end())
                self._hunting_literal = False
                self.transferred += match.end() + inside
                self._count("literal")
                return match.end() + inside, "literal"
            budget = self._budget
            if budget is not None:
                if len(data) >= budget:
                    self._budget = None
                    self.transferred += budget
                    self._count("drop")
                    return budget, "drop"
                self._budget = budget - len(data)
            if self._faults and self.transferred + len(data) >= self._faults[0].offset:
                fault = self._faults.pop(0)
                keep = max(0, fault.offset - self.transferred)
                self.transferred += keep
                if fault.kind == "literal":
                    self._hunting_literal = True
                    return keep, None  # forward up to here, then look for a literal
                self._count(fault.kind)
                return keep, fault.kind
            self.transferred += len(data)
            return len(data), None

    def _count(self, kind: str) -> None:
        """Note a fault as fired (the caller holds the lock)."""
        self.fired[kind] += 1
        self.events.append(f"{time.monotonic():.3f} {kind} at {self.transferred}")
        if kind != "stall":
            self.cuts += 1

    def _pump(self, source: socket.socket, sink: socket.socket, from_server: bool) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                data = self._tamper(data, from_server)
                if from_server and self._withheld(data):
                    self.cut_all()
                    return
                while data:
                    keep, fault = self._plan_chunk(data)
                    if keep:
                        sink.sendall(data[:keep])
                    data = data[keep:]
                    if fault == "stall":
                        time.sleep(self._stall_seconds)
                        if _reset_by_peer(source):
                            # Like TCP: what had not got through when its sender reset the
                            # connection is never delivered.
                            return
                    elif fault is not None:
                        self.cut_all()
                        return
        except OSError:
            pass
        finally:
            close_sockets(source, sink)


def _reset_by_peer(sock: socket.socket) -> bool:
    """Whether the peer has reset the connection (TCP RST), even with its data still unread."""
    try:
        state = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]
        error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    except OSError:
        return True
    return state == _TCP_CLOSE or error != 0
