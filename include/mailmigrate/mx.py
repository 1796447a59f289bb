"""MX propagation: has the change of a domain's MX records reached every server we can ask?

One check (:func:`check_mx` in a shell or worker, :func:`acheck_mx` in the triggerer) asks every
configured resolver and every authoritative server for the domain's MX records and returns an
:class:`Observation`. A :class:`PropagationTracker` folds observations over time into a verdict and
keeps its memory as a small dict, so a trigger can carry it through serialization.

The two check variants share all logic: :func:`_observe` is a generator that yields batches of
queries and receives their results, and only the drivers (threads or asyncio) do I/O.

Servers are written ``host`` or ``host:port`` (IPv6 as ``[::1]:53``); hosts must be IP addresses.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Callable, Generator, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mailmigrate.plan import MxCheck

if TYPE_CHECKING:
    import dns.resolver

# dnspython is imported where a query runs, not with this module: DAG files import the sensors
# (and so this module) in every task process, and dnspython takes about 0.1 s to import.

DEFAULT_QUERY_TIMEOUT = 5.0
ERROR_KINDS = ("nxdomain", "servfail", "timeout", "noanswer", "refused", "unreachable", "error")
# Definite answers that the record is absent: they describe the zone, unlike failures to answer.
_NEGATIVE_KINDS = frozenset({"nxdomain", "noanswer"})
_ERROR_TEXT = {
    "nxdomain": "NXDOMAIN",
    "noanswer": "no MX records",
    "servfail": "SERVFAIL",
    "refused": "REFUSED",
    "timeout": "timeout",
    "unreachable": "unreachable",
    "error": "error",
}


def normalize_host(name: str) -> str:
    """``MX1.Example.COM.`` -> ``mx1.example.com`` (the null MX ``.`` stays ``.``)."""
    return name.strip().rstrip(".").lower() or "."


@dataclass(frozen=True)
class Server:
    """A DNS server address: an IP address and a port."""

    host: str
    port: int = 53

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_server(text: str, default_port: int = 53) -> Server:
    """Parse ``"1.1.1.1"``, ``"127.0.0.1:5353"``, ``"::1"`` or ``"[::1]:5353"``.

    :raises ValueError: the host is not an IP address or the port is not a number.
    """
    value = text.strip()
    port_text: str | None = None
    if value.startswith("["):
        host, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"DNS server {text!r}: expected [IPv6] or [IPv6]:port")
        port_text = rest[1:] or None
    elif value.count(":") == 1:
        host, port_text = value.split(":")
    else:
        host = value
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"DNS server {text!r}: {host!r} is not an IP address") from None
    if port_text is None:
        return Server(host, default_port)
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"DNS server {text!r}: bad port {port_text!r}")
    return Server(host, int(port_text))


@dataclass(frozen=True)
class ServerAnswer:
    """What one server said: a set of host names with a TTL, or an error kind.

    :param role: ``"authoritative"`` or ``"resolver"``.
    :param server: how the server is named in logs (``127.0.0.1:53``, ``ns1.x (192.0.2.1:53)``).
    :param error: one of :data:`ERROR_KINDS`, or ``None`` for an answer with records.
    """

    role: str
    server: str
    hosts: frozenset[str] = frozenset()
    ttl: int | None = None
    error: str | None = None
    detail: str = ""

    @property
    def line(self) -> str:
        """``resolver 127.0.0.1:5353: mx1.new.example (ttl 300)``."""
        if self.error is None:
            return f"{self.role} {self.server}: {', '.join(sorted(self.hosts))} (ttl {self.ttl})"
        text = _ERROR_TEXT.get(self.error, self.error)
        return f"{self.role} {self.server}: {text}" + (f" ({self.detail})" if self.detail else "")

    def answers(self, expected: frozenset[str]) -> bool:
        return self.error is None and self.hosts == expected


@dataclass(frozen=True)
class Observation:
    """Every server's MX answer for one domain at one moment (``observed_at``, epoch seconds)."""

    domain: str
    expected: frozenset[str]
    answers: tuple[ServerAnswer, ...]
    observed_at: float

    @property
    def authoritative(self) -> tuple[ServerAnswer, ...]:
        return tuple(a for a in self.answers if a.role == "authoritative")

    @property
    def resolvers(self) -> tuple[ServerAnswer, ...]:
        return tuple(a for a in self.answers if a.role == "resolver")

    def lines(self) -> list[str]:
        """One log line per server, authoritative servers first."""
        return [answer.line for answer in self.answers]


@dataclass(frozen=True)
class Progress:
    """The tracker's verdict after one observation.

    :param remaining: seconds of TTL wait left when nothing else blocks, else ``None``.
    """

    propagated: bool
    reason: str
    remaining: float | None = None


class PropagationTracker:
    """Decides when an MX change has propagated, from a series of observations.

    Propagated means: every authoritative server and every resolver answers exactly the expected
    host set, and at least the OLD record's TTL has passed since the tracker first saw every
    authoritative server answer the expected set (so caches we cannot ask have expired too). The
    old TTL is the last TTL the authoritative servers gave while answering another set (the largest
    in that observation); when the old record was never seen, the new record's TTL is used.

    What each observation does to the memory (``changed_at``, ``old_ttl``, ``new_ttl``):

    - every authoritative server answers the expected set: start the clock if it is not running;
    - any authoritative server gives a definite other answer (old set, partial set, NXDOMAIN, no
      records): the change is not, or no longer, in place everywhere, so the clock stops and a
      later change starts it anew; a positive answer's TTL becomes the old TTL;
    - failures (SERVFAIL, timeout, REFUSED, ...) say nothing about the record: they block the
      verdict but change no memory, so a flapping server does not restart the wait;
    - resolver answers never change the memory: they only block until they agree.

    :param expected: the expected MX host names (case and trailing dot do not matter).
    :param state: a dict from :meth:`to_state` to continue from.
    """

    def __init__(self, expected: Iterable[str], state: Mapping[str, Any] | None = None) -> None:
        self.expected = frozenset(normalize_host(h) for h in expected)
        if not self.expected:
            raise ValueError("an MX check needs at least one expected host")
        state = state or {}
        self.changed_at: float | None = _optional(float, state.get("changed_at"))
        self.old_ttl: int | None = _optional(int, state.get("old_ttl"))
        self.new_ttl: int | None = _optional(int, state.get("new_ttl"))
        self.checks = int(state.get("checks") or 0)

    def to_state(self) -> dict[str, Any]:
        """The tracker's memory as plain JSON-serializable values."""
        return {
            "changed_at": self.changed_at,
            "old_ttl": self.old_ttl,
            "new_ttl": self.new_ttl,
            "checks": self.checks,
        }

    @property
    def wait_seconds(self) -> int:
        """How long after the authoritative change caches may still hold the old record."""
        if self.old_ttl is not None:
            return self.old_ttl
        return self.new_ttl or 0

    def update(self, observation: Observation, now: float | None = None) -> Progress:
        """Fold in one observation and say whether the change has propagated.

        :param now: the current time in epoch seconds; ``observation.observed_at`` by default.
        """
        now = observation.observed_at if now is None else now
        self.checks += 1
        authoritative = observation.authoritative
        matching = [a for a in authoritative if a.answers(self.expected)]
        definite_other = [
            a
            for a in authoritative
            if not a.answers(self.expected) and (a.error is None or a.error in _NEGATIVE_KINDS)
        ]
        if definite_other:
            self.changed_at = None
            old_ttls = [a.ttl for a in definite_other if a.error is None and a.ttl is not None]
            if old_ttls:
                self.old_ttl = max(old_ttls)
        elif authoritative and len(matching) == len(authoritative):
            if self.changed_at is None:
                self.changed_at = now
            new_ttls = [a.ttl for a in matching if a.ttl is not None]
            self.new_ttl = max([*new_ttls, self.new_ttl or 0])

        blocking = [a.line for a in observation.answers if not a.answers(self.expected)]
        if not authoritative:
            return Progress(False, "no authoritative server to ask")
        if blocking:
            servers = f"{len(blocking)} of {len(observation.answers)} servers"
            return Progress(
                False,
                f"{servers} do not answer {', '.join(sorted(self.expected))} yet: "
                + "; ".join(blocking),
            )
        assert self.changed_at is not None  # every authoritative server matched just above
        remaining = self.changed_at + self.wait_seconds - now
        if remaining > 0:
            return Progress(
                False,
                f"every server answers the expected set; waiting {remaining:.0f} s more for the "
                f"old TTL ({self.wait_seconds} s) to expire",
                remaining,
            )
        return Progress(
            True,
            f"every server answers {', '.join(sorted(self.expected))}, and the old TTL "
            f"({self.wait_seconds} s) has passed since the authoritative change",
            0.0,
        )


def _optional(kind: Callable[[Any], Any], value: Any) -> Any:
    return None if value is None else kind(value)


# -- the shared, I/O-free check ---------------------------------------------------------------


@dataclass(frozen=True)
class _Query:
    server: Server
    name: str
    rdtype: str


@dataclass(frozen=True)
class _Result:
    records: tuple[str, ...] = ()
    ttl: int | None = None
    error: str | None = None
    detail: str = ""


_Steps = Generator[list[_Query], list[_Result], tuple[ServerAnswer, ...]]


def resolver_servers(check: MxCheck) -> list[Server]:
    """The configured resolvers, or the system's (``/etc/resolv.conf``) when none are."""
    if check.resolvers:
        return [parse_server(s) for s in check.resolvers]
    import dns.resolver

    try:
        system = dns.resolver.Resolver(configure=True)
    except dns.resolver.NoResolverConfiguration as exc:
        raise ValueError("no MX resolvers configured and no system resolver found") from exc
    return [Server(host, system.port) for host in system.nameservers if isinstance(host, str)]


def _observe(domain: str, check: MxCheck, ns_port: int) -> _Steps:
    resolvers = resolver_servers(check)
    failures: list[ServerAnswer] = []
    if check.authoritative:
        targets = [(str(s), s) for s in (parse_server(a) for a in check.authoritative)]
    else:
        targets, failures = yield from _discover_authoritative(domain, resolvers, ns_port)
    everyone = [("authoritative", label, server) for label, server in targets]
    everyone += [("resolver", str(server), server) for server in resolvers]
    results = yield [_Query(server, domain, "MX") for _, _, server in everyone]
    answers = [
        ServerAnswer(role, label, frozenset(r.records), r.ttl, r.error, r.detail)
        for (role, label, _), r in zip(everyone, results, strict=True)
    ]
    return (*failures, *answers)


def _discover_authoritative(
    domain: str, resolvers: list[Server], ns_port: int
) -> Generator[list[_Query], list[_Result], tuple[list[tuple[str, Server]], list[ServerAnswer]]]:
    """The domain's name servers (from its zone's NS records) by address, through the resolvers.

    Walks up from ``domain`` to the closest name with NS records (the zone apex), stopping above
    the second level. Unreachable NS lookups come back as blocking authoritative answers.
    """
    name = domain.rstrip(".")
    while True:
        results = yield [_Query(r, name, "NS") for r in resolvers]
        ns_names = sorted({normalize_host(n) for r in results for n in r.records})
        if ns_names:
            break
        definite = results and all(r.error in _NEGATIVE_KINDS for r in results)
        if definite and name.count(".") > 1:
            name = name.split(".", 1)[1]
            continue
        kinds = sorted({r.error or "noanswer" for r in results})
        failure = ServerAnswer(
            "authoritative",
            f"NS of {domain}",
            error=kinds[0] if kinds else "error",
            detail=f"NS lookup: {', '.join(kinds) or 'no resolver to ask'}",
        )
        return [], [failure]

    queries = [_Query(r, ns, t) for ns in ns_names for t in ("A", "AAAA") for r in resolvers]
    results = yield queries
    addresses: dict[str, set[str]] = {ns: set() for ns in ns_names}
    errors: dict[str, set[str]] = {ns: set() for ns in ns_names}
    for query, result in zip(queries, results, strict=True):
        addresses[query.name].update(result.records)
        if result.error:
            errors[query.name].add(result.error)
    targets: list[tuple[str, Server]] = []
    failures: list[ServerAnswer] = []
    seen: set[str] = set()
    for ns in ns_names:
        if not addresses[ns]:
            kinds = sorted(errors[ns]) or ["noanswer"]
            detail = f"address lookup: {', '.join(kinds)}"
            failures.append(ServerAnswer("authoritative", ns, error=kinds[0], detail=detail))
        for address in sorted(addresses[ns] - seen):
            seen.add(address)
            server = Server(address, ns_port)
            targets.append((f"{ns} ({server})", server))
    return targets, failures


def _result_from_answer(rdtype: str, answer: dns.resolver.Answer) -> _Result:
    rrset = answer.rrset
    if rrset is None:
        return _Result(error="noanswer")
    if rdtype == "MX":
        records = tuple(normalize_host(r.exchange.to_text()) for r in rrset)
    elif rdtype == "NS":
        records = tuple(normalize_host(r.target.to_text()) for r in rrset)
    else:
        records = tuple(r.address for r in rrset)
    return _Result(records=records, ttl=rrset.ttl)


def _result_from_error(exc: Exception) -> _Result:
    import dns.exception
    import dns.resolver

    if isinstance(exc, dns.resolver.NXDOMAIN):
        return _Result(error="nxdomain")
    if isinstance(exc, dns.resolver.NoAnswer):
        return _Result(error="noanswer")
    if isinstance(exc, dns.exception.Timeout):
        return _Result(error="timeout")
    if isinstance(exc, dns.resolver.NoNameservers):
        server_errors = exc.kwargs.get("errors") or []
        cause = server_errors[-1][3] if server_errors else None
        if isinstance(cause, str) and cause.lower() in ("servfail", "refused"):
            return _Result(error=cause.lower())
        if isinstance(cause, dns.exception.Timeout):
            return _Result(error="timeout")
        if isinstance(cause, OSError):
            return _Result(error="unreachable", detail=str(cause))
        return _Result(error="error", detail=str(cause))
    return _Result(error="error", detail=f"{type(exc).__name__}: {exc}")


def _configure(resolver: dns.resolver.Resolver, server: Server, timeout: float) -> None:
    resolver.nameservers = [server.host]
    resolver.port = server.port
    resolver.timeout = timeout
    resolver.lifetime = timeout
    resolver.retry_servfail = False
    resolver.cache = None


# -- drivers: the only I/O ----------------------------------------------------------------------


def _query_sync(query: _Query, timeout: float) -> _Result:
    import dns.exception
    import dns.resolver

    resolver = dns.resolver.Resolver(configure=False)
    _configure(resolver, query.server, timeout)
    try:
        answer = resolver.resolve(query.name, query.rdtype, search=False)
    except dns.exception.DNSException as exc:
        return _result_from_error(exc)
    return _result_from_answer(query.rdtype, answer)


async def _query_async(query: _Query, timeout: float) -> _Result:
    import dns.asyncresolver
    import dns.exception

    resolver = dns.asyncresolver.Resolver(configure=False)
    _configure(resolver, query.server, timeout)
    try:
        answer = await resolver.resolve(query.name, query.rdtype, search=False)
    except dns.exception.DNSException as exc:
        return _result_from_error(exc)
    return _result_from_answer(query.rdtype, answer)


def check_mx(
    domain: str,
    check: MxCheck,
    *,
    timeout: float = DEFAULT_QUERY_TIMEOUT,
    ns_port: int = 53,
    clock: Callable[[], float] = time.time,
) -> Observation:
    """Ask every resolver and authoritative server for ``domain``'s MX records (blocking).

    :param timeout: seconds per query; the queries of one step run in parallel threads.
    :param ns_port: the port of name servers found through NS records (53 outside tests).
    :param clock: the time source for ``Observation.observed_at``.
    """
    steps = _observe(domain, check, ns_port)
    with ThreadPoolExecutor(max_workers=16, thread_name_prefix="mx-check") as pool:
        try:
            batch = next(steps)
            while True:
                results = list(pool.map(lambda q: _query_sync(q, timeout), batch))
                batch = steps.send(results)
        except StopIteration as done:
            answers = done.value
    return Observation(domain, _expected(check), answers, clock())


async def acheck_mx(
    domain: str,
    check: MxCheck,
    *,
    timeout: float = DEFAULT_QUERY_TIMEOUT,
    ns_port: int = 53,
    clock: Callable[[], float] = time.time,
) -> Observation:
    """The asyncio variant of :func:`check_mx`, for the triggerer: same queries, same result."""
    steps = _observe(domain, check, ns_port)
    try:
        batch = next(steps)
        while True:
            results = await asyncio.gather(*(_query_async(q, timeout) for q in batch))
            batch = steps.send(list(results))
    except StopIteration as done:
        answers = done.value
    return Observation(domain, _expected(check), answers, clock())


def _expected(check: MxCheck) -> frozenset[str]:
    return frozenset(normalize_host(h) for h in check.expect)
