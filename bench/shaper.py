"""A shaping TCP proxy: a real link's latency and bandwidth between a client and a server.

Each direction has a one-way delay and, optionally, a bandwidth cap. The cap is the link's: all
connections through one proxy share it, as the connections of a migration share the uplink of the
server they talk to. Every chunk read from one end is scheduled like a packet on a wire::

    start    = max(arrival, when the wire is free)      # queued behind data already in flight
    end      = start + bytes / bandwidth                  # serialisation at the cap
    delivery = end + one-way delay

so data in flight overlaps as on a real link (pipelined commands all travel in one delay, a long
transfer keeps the wire busy), and nothing is ever delivered before ``arrival + delay``. A bounded
amount of data may wait per direction (:data:`WINDOW`, a TCP window of a long fat link): beyond it
the proxy stops reading, so the sender feels back-pressure as from a full window.

It also counts, per direction, the bytes carried and, for round trips, the commands the server
answered (tagged responses) and the client's *flights*: a flight starts whenever a client sends
after the server has sent something since its last send, i.e. each time the client waited for an
answer before going on. :meth:`ShapingProxy.cut` drops every connection (as a network cut).

The proxy runs an asyncio loop in a daemon thread; its API is plain blocking calls.
"""

from __future__ import annotations

import asyncio
import re
import socket
import threading
from collections import deque
from dataclasses import dataclass, field

WINDOW = 4 * 1024 * 1024  # bytes that may be in flight per direction and connection
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

    def schedule(self, now: float, size: int) -> float:
        """When a chunk of ``size`` bytes arriving ``now`` is delivered at the far end."""
        if self.rate is None:
            return now + self.delay
        start = max(now, self.free_at)
        self.free_at = start + size / self.rate
        return self.free_at + self.delay


class _Connection:
    def __init__(self, proxy: ShapingProxy) -> None:
        self.proxy = proxy
        self.flights = 0
        self.answered = True  # the greeting counts as an answer: the first send is a flight
        self.writers: list[asyncio.StreamWriter] = []

    def on_data(self, data: bytes, from_server: bool, tail: bytearray) -> None:
        traffic = self.proxy.traffic
        if from_server:
            traffic.bytes_down += len(data)
            self.answered = True
            text = bytes(tail) + data
            traffic.commands += len(_TAGGED.findall(text))
            cut = text.rfind(b"\n")
            tail[:] = text[cut + 1 :][-256:] if cut >= 0 else text[-256:]
        else:
            traffic.bytes_up += len(data)
            if self.answered:
                self.answered = False
                self.flights += 1
                traffic.flights += 1


class ShapingProxy:
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
        self.target = (target_host, target_port)
        self.host = "127.0.0.1"
        self._up = _Wire(delay, mbit_up)
        self._down = _Wire(delay, mbit_down)
        self.traffic = Traffic()
        self._connections: set[_Connection] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._server = self._call(
            asyncio.start_server(self._serve, self.host, 0, reuse_address=True)
        )
        self.port: int = self._server.sockets[0].getsockname()[1]

    def __enter__(self) -> ShapingProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(30)

    def reset(self) -> Traffic:
        """The traffic so far; counting starts again from zero."""

        async def swap() -> Traffic:
            old, self.traffic = self.traffic, Traffic()
            return old

        return self._call(swap())

    def cut(self) -> None:
        """Drop every open connection now (data in flight is lost)."""

        async def drop() -> None:
            for connection in list(self._connections):
                for writer in connection.writers:
                    writer.transport.abort()

        self._call(drop())

    def close(self) -> None:
        if not self._loop.is_running():
            return
        self._server.close()
        self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    # -- forwarding --------------------------------------------------------------------------
    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter):
        connection = _Connection(self)
        try:
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.transport.abort()
            return
        for writer in (client_w, server_w):
            writer.transport.get_extra_info("socket").setsockopt(
                socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
            )
        connection.writers = [client_w, server_w]
        self._connections.add(connection)
        self.traffic.connections += 1
        try:
            await asyncio.gather(
                self._pump(connection, client_r, server_w, self._up, from_server=False),
                self._pump(connection, server_r, client_w, self._down, from_server=True),
                return_exceptions=True,
            )
        finally:
            self.traffic.flights_per_connection.append(connection.flights)
            self._connections.discard(connection)
            for writer in connection.writers:
                writer.transport.abort()

    async def _pump(self, connection, reader, writer, wire: _Wire, *, from_server: bool):
        """Read from one end, deliver each chunk to the other at its scheduled time."""
        loop = asyncio.get_running_loop()
        queue: deque[tuple[float, bytes]] = deque()
        waiting = 0  # bytes read and not yet delivered
        ready = asyncio.Event()  # a chunk was queued
        room = asyncio.Event()  # the window has room again
        room.set()
        done = False

        async def deliver() -> None:
            nonlocal waiting
            while queue or not done:
                if not queue:
                    ready.clear()
                    await ready.wait()
                    continue
                at, data = queue.popleft()
                pause = at - loop.time()
                if pause > 0:
                    await asyncio.sleep(pause)
                writer.write(data)
                await writer.drain()
                waiting -= len(data)
                if waiting < WINDOW:
                    room.set()
            if writer.can_write_eof():
                writer.write_eof()

        delivering = asyncio.ensure_future(deliver())
        tail = bytearray()
        try:
            while True:
                await room.wait()
                data = await reader.read(CHUNK)
                if not data:
                    break
                connection.on_data(data, from_server, tail)
                queue.append((wire.schedule(loop.time(), len(data)), data))
                waiting += len(data)
                if waiting >= WINDOW:
                    room.clear()
                ready.set()
        finally:
            done = True
            ready.set()
            await delivering
