"""Real DNS servers for tests: dnsmasq from Debian's ``dnsmasq-base``, one process per server.

Each :class:`DnsServer` listens on a loopback address and its own free UDP+TCP port, in the
foreground, with a configuration file in a temporary directory and nothing else: no upstream
servers, no ``/etc/hosts``, no ``resolv.conf``, no cache. Tests use several of them to play the
authoritative servers and the recursive resolvers of a domain that change at different times.

dnsmasq does not reload ``mx-host`` (or any record but hosts files) on SIGHUP, so every change
restarts the process on the same address and port. :meth:`DnsServer.set_mx` and friends return only
once the new process serves the new configuration over UDP and TCP: the configuration carries a
generation number as a TXT record, and the harness polls for it.

Failure modes (:meth:`DnsServer.fail`):

``nxdomain``
    The domain is local to the server and has no records: NXDOMAIN.
``servfail``
    The domain is forwarded to a loopback stub that answers SERVFAIL; dnsmasq relays it. dnsmasq
    has no configuration of its own that yields SERVFAIL without an upstream.
``timeout``
    The domain is forwarded to a loopback UDP socket that never answers; the client times out.
``refused``
    The domain is not configured at all; dnsmasq, having no upstream, answers REFUSED.

dnsmasq gives every local record the same TTL (``local-ttl``), so the TTL is per server: every
``set_mx`` call (``ttl`` defaults to 2) sets it for all records of that server.
"""

from __future__ import annotations

import contextlib
import ipaddress
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import pytest

__all__ = ["DNSMASQ_BINARY", "DnsServer", "dns_servers"]

DNSMASQ_BINARY = "/usr/sbin/dnsmasq"
FAILURE_MODES = ("nxdomain", "servfail", "timeout", "refused")
START_TIMEOUT = 15.0
_GENERATION_NAME = "_generation.harness.invalid"


def _free_port(host: str) -> int:
    """A port that is free for both UDP and TCP on ``host`` right now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(100):
        with socket.socket(family, socket.SOCK_STREAM) as tcp:
            tcp.bind((host, 0))
            port = tcp.getsockname()[1]
            with socket.socket(family, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((host, port))
                except OSError:
                    continue
                return port
    raise RuntimeError(f"no free UDP+TCP port on {host}")


def _free_port_on_all(hosts: list[str]) -> int:
    """A port free for UDP and TCP on every one of ``hosts`` (to share one port across addresses)."""
    for _ in range(100):
        port = _free_port(hosts[0])
        try:
            for host in hosts[1:]:
                family = socket.AF_INET6 if ":" in host else socket.AF_INET
                for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                    with socket.socket(family, kind) as sock:
                        sock.bind((host, port))
        except OSError:
            continue
        return port
    raise RuntimeError(f"no port free on all of {hosts}")


def _wire_name_hex(name: str) -> str:
    """A domain name in uncompressed wire format as hex, for dnsmasq's ``dns-rr``."""
    return dns.name.from_text(name).to_wire().hex()


class _Upstream:
    """A loopback UDP endpoint that dnsmasq forwards a failing domain to.

    :param answer_servfail: answer every query with SERVFAIL; otherwise never answer at all.
    """

    def __init__(self, answer_servfail: bool) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        if answer_servfail:
            self._sock.settimeout(0.2)
            self._thread = threading.Thread(target=self._serve, daemon=True)
            self._thread.start()

    def _serve(self) -> None:
        while not self._closed.is_set():
            try:
                data, peer = self._sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                response = dns.message.make_response(dns.message.from_wire(data))
            except Exception:
                continue
            response.set_rcode(dns.rcode.SERVFAIL)
            with contextlib.suppress(OSError):
                self._sock.sendto(response.to_wire(), peer)

    def close(self) -> None:
        self._closed.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self._sock.close()


class DnsServer:
    """One dnsmasq process serving MX (and optionally NS) records on a loopback address.

    :param root: an empty directory for the configuration and the log.
    :param host: the address to listen on (``127.0.0.1``, another ``127.x`` address, or ``::1``).
    :param port: a fixed port (to restart on, or to share across hosts); a free one by default.
    """

    def __init__(self, root: Path, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.port = port if port is not None else _free_port(host)
        self.ttl = 2
        self._mx: dict[str, list[tuple[int, str]]] = {}
        self._ns: dict[str, list[tuple[str, str]]] = {}
        self._failures: dict[str, str] = {}
        self._generation = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._servfail: _Upstream | None = None
        self._blackhole: _Upstream | None = None

    @property
    def address(self) -> str:
        """``host:port`` as the MX check takes it (``[::1]:port`` for IPv6)."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.root / "dnsmasq.log"

    def start(self) -> None:
        """Start dnsmasq and return once it serves the current configuration."""
        if self._process is not None:
            return
        self._launch()

    def stop(self) -> None:
        """Stop dnsmasq and the failure stubs; the server can be started again."""
        self._terminate()
        for upstream in (self._servfail, self._blackhole):
            if upstream is not None:
                upstream.close()
        self._servfail = self._blackhole = None

    def set_mx(self, domain: str, hosts: list[str] | list[tuple[int, str]], ttl: int = 2) -> None:
        """Replace the MX set of ``domain`` (and clear a failure mode set on it).

        :param hosts: exchange names, preferences 10, 20, ... in order; or ``(preference, name)``.
        :param ttl: the TTL of every local record of this server (dnsmasq has one for all).
        """
        records: list[tuple[int, str]] = []
        for index, entry in enumerate(hosts):
            pref, name = entry if isinstance(entry, tuple) else (10 * (index + 1), entry)
            records.append((int(pref), str(name)))
        self._mx[domain.rstrip(".").lower()] = records
        self._failures.pop(domain.rstrip(".").lower(), None)
        self.ttl = ttl
        self._reload()

    def set_ns(self, domain: str, ns_hosts: list[tuple[str, str]]) -> None:
        """Serve NS records for ``domain`` and an A/AAAA record for each name server.

        :param ns_hosts: ``(name server host name, its IP address)`` pairs.
        """
        self._ns[domain.rstrip(".").lower()] = [
            (name.rstrip(".").lower(), a) for name, a in ns_hosts
        ]
        self._reload()

    def fail(self, domain: str, mode: str) -> None:
        """Make the server answer badly for ``domain``: one of :data:`FAILURE_MODES`."""
        if mode not in FAILURE_MODES:
            raise ValueError(f"unknown failure mode {mode!r}; expected one of {FAILURE_MODES}")
        self._failures[domain.rstrip(".").lower()] = mode
        self._reload()

    def clear_failure(self, domain: str) -> None:
        """Serve ``domain``'s records normally again."""
        self._failures.pop(domain.rstrip(".").lower(), None)
        self._reload()

    # -- internals ---------------------------------------------------------------------------

    def _reload(self) -> None:
        if self._process is None:
            return  # start() will use the new configuration
        self._terminate()
        self._launch()

    def _config(self) -> str:
        lines = [
            "# Written by tests/harness/dns.py for one test server.",
            f"local-ttl={self.ttl}",
            f"txt-record={_GENERATION_NAME},{self._generation}",
            f"local=/{_GENERATION_NAME}/",
        ]
        for domain in sorted(set(self._mx) | set(self._ns) | set(self._failures)):
            mode = self._failures.get(domain)
            if mode == "refused":
                continue
            if mode == "servfail":
                if self._servfail is None:
                    self._servfail = _Upstream(answer_servfail=True)
                lines.append(f"server=/{domain}/127.0.0.1#{self._servfail.port}")
                continue
            if mode == "timeout":
                if self._blackhole is None:
                    self._blackhole = _Upstream(answer_servfail=False)
                lines.append(f"server=/{domain}/127.0.0.1#{self._blackhole.port}")
                continue
            lines.append(f"local=/{domain}/")
            if mode == "nxdomain":
                continue
            lines.extend(
                f"mx-host={domain},{name},{pref}" for pref, name in self._mx.get(domain, [])
            )
            for name, address in self._ns.get(domain, []):
                lines.append(f"dns-rr={domain},2,{_wire_name_hex(name)}")
                lines.append(f"host-record={name},{address}")
                lines.append(f"local=/{name}/")
        return "\n".join(lines) + "\n"

    def _launch(self) -> None:
        self._generation += 1
        config = self.root / "dnsmasq.conf"
        config.write_text(self._config())
        command = [
            DNSMASQ_BINARY,
            "--keep-in-foreground",
            "--no-hosts",
            "--no-resolv",
            "--no-poll",
            f"--listen-address={self.host}",
            "--bind-interfaces",
            f"--port={self.port}",
            f"--conf-file={config}",
            "--pid-file=",
            "--cache-size=0",
            "--log-facility=-",
            "--log-queries",
        ]
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            with self.log_path.open("ab") as log:
                log.write(f"--- generation {self._generation}\n".encode())
                log.flush()
                self._process = subprocess.Popen(
                    command, stdin=subprocess.DEVNULL, stdout=log, stderr=log
                )
            if self._wait_ready(deadline):
                return
            # A restart can race the old sockets' release: dnsmasq then exits at once.
            exited = self._process.poll() is not None
            self._terminate()
            if not exited or time.monotonic() > deadline:
                raise RuntimeError(
                    f"dnsmasq on {self.address} did not start; log tail:\n{self._log_tail()}"
                )
            time.sleep(0.1)

    def _wait_ready(self, deadline: float) -> bool:
        """Poll until this generation is served over UDP and TCP; False if dnsmasq exited."""
        assert self._process is not None
        query = dns.message.make_query(_GENERATION_NAME, "TXT")
        want = f'"{self._generation}"'
        pending = [dns.query.udp, dns.query.tcp]
        while pending and time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            try:
                response = pending[0](query, self.host, timeout=0.05, port=self.port)
            except (OSError, EOFError, dns.exception.DNSException):
                time.sleep(0.05)
                continue
            if any(want in rrset.to_text() for rrset in response.answer):
                pending.pop(0)
            else:
                time.sleep(0.05)
        if pending:
            raise RuntimeError(
                f"dnsmasq on {self.address} not ready after {START_TIMEOUT} s; "
                f"log tail:\n{self._log_tail()}"
            )
        return True

    def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _is_usable_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@contextmanager
def dns_pool() -> Iterator[Callable[..., list[DnsServer]]]:
    """Factory: ``dns_servers(n, host="127.0.0.1", hosts=None, shared_port=False)``.

    Starts ``n`` dnsmasq servers (on ``hosts[i]`` when given, all on one port with
    ``shared_port=True``, so that name servers looked up by address can be reached on one port)
    and stops them all when the block ends.
    """
    if shutil.which(DNSMASQ_BINARY) is None:
        pytest.fail(
            f"{DNSMASQ_BINARY} is not installed: run make install (Debian package dnsmasq-base)"
        )
    started: list[DnsServer] = []
    roots: list[str] = []

    def factory(
        n: int, host: str = "127.0.0.1", hosts: list[str] | None = None, shared_port: bool = False
    ) -> list[DnsServer]:
        addresses = list(hosts) if hosts is not None else [host] * n
        if len(addresses) != n or not all(_is_usable_host(a) for a in addresses):
            raise ValueError(f"need {n} IP addresses, got {addresses}")
        port = _free_port_on_all(sorted(set(addresses))) if shared_port else None
        servers = []
        for address in addresses:
            root = tempfile.mkdtemp(prefix="mailmigrate-dns-")
            roots.append(root)
            server = DnsServer(Path(root), host=address, port=port)
            started.append(server)
            server.start()
            servers.append(server)
        return servers

    try:
        yield factory
    finally:
        for server in started:
            server.stop()
        for root in roots:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def dns_servers() -> Iterator[Callable[..., list[DnsServer]]]:
    """DNS servers for one test (:func:`dns_pool`), stopped at its teardown."""
    with dns_pool() as factory:
        yield factory


@pytest.fixture(scope="session")
def session_dns_servers() -> Iterator[Callable[..., list[DnsServer]]]:
    """DNS servers for session fixtures (:func:`dns_pool`), stopped at the end of the session."""
    with dns_pool() as factory:
        yield factory
