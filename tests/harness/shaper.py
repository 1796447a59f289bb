"""A shaping TCP proxy: a real link's latency and bandwidth between a client and a server.

Each direction has a one-way delay and, optionally, a bandwidth cap. The cap is the link's: all
connections through one proxy share it, as the connections of a migration share the uplink of the
server they talk to. Every chunk read from one end is scheduled like a packet on a wire::

    start    = max(arrival, when the wire is free)      # queued behind data already in flight
    end      = start + bytes / bandwidth                  # serialisation at the cap
    delivery = end + one-way delay

so data in flight overlaps as on a real link (pipelined commands all travel in one delay, a long
transfer keeps the wire busy), and nothing is ever delivered before ``arrival + delay``. A bounded
amount of data may be in flight per connection and direction, as TCP's window bounds it: twice
the bandwidth-delay product of a capped link (at least :data:`MIN_WINDOW`), :data:`WINDOW` on an
uncapped one. Beyond it the proxy stops reading, so the sender feels back-pressure, and a
connection's bulk transfer queues at most that much ahead of another connection's commands on
the shared wire (no more bufferbloat than a real path has).

It also counts, per direction, the bytes carried and, for round trips, the commands the server
answered (tagged responses) and the client's *flights*: a flight starts whenever a client sends
after the server has sent something since its last send, i.e. each time the client waited for an
answer before going on. :meth:`ShapingProxy.cut` drops every connection (as a network cut).

Built on the harness's forwarding core (:class:`~harness.forwarding.ForwardingProxy`): the
core's thread per direction reads and schedules, a second thread per direction delivers on time.
Used by the benchmark's links section (``bench/links.py``) and by the tests that run the engine
over a link with a few milliseconds of delay.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from harness.forwarding import ForwardingProxy, close_sockets

WINDOW = 4 * 1024 * 1024  # bytes that may be in flight per direction and connection, uncapped
MIN_WINDOW = 256 * 1024
CHUNK = 64 * 1024
_TAGGED = re.compile(rb"(?m)^[A-Za-z0-9.]+ (?:OK|NO|BAD)\b")


@dataclass
class Traffic:
    """What crossed the proxy since the last :meth:`ShapingProxy.reset`."""

    bytes_up: int = 0  # client -> server
    bytes_down: int = 0  # server -> client
    commands: int = 0  # tagged responses from the server
    flights: int = 0  # client sends that followed an answer (round trips, summed)
    connections: int = 0
    flights_per_connection: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, int]:
        return {
            "bytes_up": self.bytes_up,
            "bytes_down": self.bytes_down,
            "commands": self.commands,
            "flights": self.flights,
            "connections": self.connections,
            "most_flights_on_a_connection": max(self.flights_per_connection, default=0),
        }


class _Wire:
    """One direction of the link: when it is free again, at ``rate`` bytes per second."""

    def __init__(self, delay: float, mbit: float | None) -> None:
        self.delay = delay
        self.rate = mbit * 1e6 / 8 if mbit else None
        self.free_at = 0.0
        self.window = max(MIN_WINDOW, int(4 * delay * self.rate)) if self.rate else WINDOW
        self.lock = threading.Lock()

    def schedule(self, now: float, size: int) -> float:
        """When a chunk of ``size`` bytes arriving ``now`` is delivered at the far end."""
        if self.rate is None:
            return now + self.delay
        with self.lock:
            start = max(now, self.free_at)
            self.free_at = start + size / self.rate
            return self.free_at + self.delay


class _Connection:
    """Round-trip bookkeeping of one client connection (both directions)."""

    def __init__(self) -> None:
        self.flights = 0
        self.answered = True  # the greeting counts as an answer: the first send is a flight


class ShapingProxy(ForwardingProxy):
    """Forwards ``host:port`` (loopback, a free port) to ``target`` through a shaped link.

    :param delay: one-way delay in seconds, each direction (the round trip adds two).
    :param mbit_up: bandwidth cap client -> server in Mbit/s (``None``: uncapped).
    :param mbit_down: bandwidth cap server -> client in Mbit/s.
    """

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        delay: float = 0.0,
        mbit_up: float | None = None,
        mbit_down: float | None = None,
    ) -> None:
        self._up = _Wire(delay, mbit_up)
        self._down = _Wire(delay, mbit_down)
        self.traffic = Traffic()
        self._count = threading.Lock()
        self._connections: dict[socket.socket, _Connection] = {}
        super().__init__(target_host, target_port)

    def reset(self) -> Traffic:
        """The traffic so far; counting starts again from zero."""
        with self._count:
            old, self.traffic = self.traffic, Traffic()
            self.traffic.connections = len(self._connections)
            return old

    def cut(self) -> None:
        """Drop every open connection now (data in flight is lost)."""
        self.cut_all()

    def upstream(self, client: socket.socket, server: socket.socket) -> None:
        self._shape(client, server, self._up, self._connection(client), from_server=False)

    def downstream(self, server: socket.socket, client: socket.socket) -> None:
        self._shape(server, client, self._down, self._connection(client), from_server=True)

    def _connection(self, client: socket.socket) -> _Connection:
        with self._count:
            connection = self._connections.get(client)
            if connection is None:
                connection = self._connections[client] = _Connection()
                self.traffic.connections += 1
            return connection

    def _counted(self, connection: _Connection, data: bytes, from_server: bool, tail: bytearray):
        with self._count:
            traffic = self.traffic
            if from_server:
                traffic.bytes_down += len(data)
                connection.answered = True
                text = bytes(tail) + data
                traffic.commands += len(_TAGGED.findall(text))
                cut = text.rfind(b"\n")
                tail[:] = text[cut + 1 :][-256:] if cut >= 0 else text[-256:]
            else:
                traffic.bytes_up += len(data)
                if connection.answered:
                    connection.answered = False
                    connection.flights += 1
                    traffic.flights += 1

    def _shape(self, source, sink, wire: _Wire, connection: _Connection, *, from_server: bool):
        """Read from one end (this thread), deliver each chunk at its time (another thread)."""
        queue: deque[tuple[float, bytes]] = deque()
        state = {"waiting": 0, "done": False}
        ready = threading.Condition()

        def deliver() -> None:
            try:
                while True:
                    with ready:
                        while not queue and not state["done"]:
                            ready.wait()
                        if not queue:
                            return
                        at, data = queue.popleft()
                    pause = at - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)
                    sink.sendall(data)
                    with ready:
                        state["waiting"] -= len(data)
                        ready.notify_all()
            except OSError:
                pass
            finally:
                close_sockets(source, sink)

        delivering = threading.Thread(target=deliver, daemon=True)
        delivering.start()
        tail = bytearray()
        try:
            while True:
                with ready:
                    while state["waiting"] >= wire.window and delivering.is_alive():
                        ready.wait(0.1)
                data = source.recv(CHUNK)
                if not data:
                    break
                self._counted(connection, data, from_server, tail)
                at = wire.schedule(time.monotonic(), len(data))
                with ready:
                    queue.append((at, data))
                    state["waiting"] += len(data)
                    ready.notify_all()
        except OSError:
            pass
        finally:
            with ready:
                state["done"] = True
                ready.notify_all()
            delivering.join()
            if from_server:
                with self._count:
                    self.traffic.flights_per_connection.append(connection.flights)
                    self._connections.pop(sink, None)
