"""MX propagation against real dnsmasq servers playing authoritative servers and resolvers.

The tracker's clock is injected (``clock=`` of the check, ``now=`` of the tracker) so that TTL
logic needs no sleeping; one test waits for a real 1-second TTL.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

import pytest

from mailmigrate.mx import (
    Observation,
    PropagationTracker,
    Server,
    ServerAnswer,
    acheck_mx,
    check_mx,
    parse_server,
)
from mailmigrate.plan import MxCheck

DOMAIN = "example.test"
OLD = ["mx1.old.test", "mx2.old.test"]
NEW = ["mx1.new.test", "mx2.new.test"]
OLD_TTL = 30
NEW_TTL = 5
T0 = 1_000_000.0  # the injected clock's start


@dataclass
class World:
    auth: list  # DnsServer
    resolvers: list
    check: MxCheck

    def observe(self, now: float, timeout: float = 2.0) -> Observation:
        return check_mx(DOMAIN, self.check, timeout=timeout, clock=lambda: now)


def make_world(dns_servers, n_auth: int = 1, n_resolvers: int = 3) -> World:
    servers = dns_servers(n_auth + n_resolvers)
    for server in servers:
        server.set_mx(DOMAIN, OLD, ttl=OLD_TTL)
    auth, resolvers = servers[:n_auth], servers[n_auth:]
    check = MxCheck(
        expect=tuple(NEW),
        resolvers=tuple(r.address for r in resolvers),
        authoritative=tuple(a.address for a in auth),
    )
    return World(auth, resolvers, check)


@pytest.fixture
def world(dns_servers) -> World:
    return make_world(dns_servers)


def flip(server, hosts=NEW, ttl=NEW_TTL) -> None:
    server.set_mx(DOMAIN, hosts, ttl=ttl)


# -- observations -------------------------------------------------------------------------------


def test_before_the_change_every_server_answers_the_old_set(world: World) -> None:
    observation = world.observe(T0)
    assert observation.lines() == [
        f"authoritative {world.auth[0].address}: mx1.old.test, mx2.old.test (ttl 30)",
        *(f"resolver {r.address}: mx1.old.test, mx2.old.test (ttl 30)" for r in world.resolvers),
    ]
    tracker = PropagationTracker(NEW)
    progress = tracker.update(observation)
    assert not progress.propagated
    assert tracker.old_ttl == OLD_TTL and tracker.changed_at is None


def test_sync_and_async_checks_observe_the_same(world: World) -> None:
    flip(world.auth[0])
    flip(world.resolvers[1], hosts=["mx1.new.test"])
    world.resolvers[2].fail(DOMAIN, "servfail")
    sync = check_mx(DOMAIN, world.check, clock=lambda: T0)
    asynchronous = asyncio.run(acheck_mx(DOMAIN, world.check, clock=lambda: T0))
    assert sync == asynchronous
    assert [a.error for a in sync.answers] == [None, None, None, "servfail"]
    assert sync.answers[2].hosts == frozenset({"mx1.new.test"})


def test_host_names_compare_without_case_or_trailing_dot(dns_servers) -> None:
    (server,) = dns_servers(1)
    server.set_mx(DOMAIN, ["MX1.New.Test", "mx2.new.test."])
    check = MxCheck(
        expect=("mx1.NEW.test.", "MX2.new.test"),
        resolvers=(server.address,),
        authoritative=(server.address,),
    )
    observation = check_mx(DOMAIN, check)
    assert all(a.hosts == frozenset({"mx1.new.test", "mx2.new.test"}) for a in observation.answers)
    tracker = PropagationTracker(check.expect)
    tracker.update(observation, now=T0)
    assert tracker.update(observation, now=T0 + 2).propagated


def test_ipv6_server_address(dns_servers) -> None:
    (server,) = dns_servers(1, host="::1")
    server.set_mx(DOMAIN, NEW)
    assert server.address.startswith("[::1]:")
    check = MxCheck(expect=tuple(NEW), resolvers=(server.address,), authoritative=(server.address,))
    observation = check_mx(DOMAIN, check)
    assert (
        observation.lines()[1] == f"resolver {server.address}: mx1.new.test, mx2.new.test (ttl 2)"
    )


# -- propagation ----------------------------------------------------------------------------------


def test_resolvers_flip_one_by_one_and_the_old_ttl_must_pass(world: World) -> None:
    tracker = PropagationTracker(NEW)
    assert not tracker.update(world.observe(T0)).propagated  # the old set, TTL 30 everywhere

    flip(world.auth[0])
    progress = tracker.update(world.observe(T0 + 10))
    assert not progress.propagated
    assert tracker.changed_at == T0 + 10 and tracker.old_ttl == OLD_TTL
    assert progress.reason.count("resolver") == 3

    for flipped, resolver in enumerate(world.resolvers, start=1):
        progress = tracker.update(world.observe(T0 + 10 + flipped))
        assert not progress.propagated
        assert progress.reason.count("mx1.old.test") == len(world.resolvers) - flipped + 1
        flip(resolver)

    # Everyone agrees at T0+14, but caches we cannot ask may hold the old record until T0+40.
    progress = tracker.update(world.observe(T0 + 14))
    assert not progress.propagated and progress.remaining == pytest.approx(26)
    assert "old TTL (30 s)" in progress.reason
    assert not tracker.update(world.observe(T0 + 39.9)).propagated
    progress = tracker.update(world.observe(T0 + 40))
    assert progress.propagated and progress.remaining == 0
    assert tracker.new_ttl == NEW_TTL


def test_partial_answer_blocks(world: World) -> None:
    tracker = PropagationTracker(NEW)
    for server in (*world.auth, *world.resolvers[:2]):
        flip(server)
    flip(world.resolvers[2], hosts=["mx1.new.test"])  # one of the two expected hosts
    tracker.update(world.observe(T0))
    progress = tracker.update(world.observe(T0 + 100))
    assert not progress.propagated
    assert progress.reason == (
        f"1 of 4 servers do not answer mx1.new.test, mx2.new.test yet: "
        f"resolver {world.resolvers[2].address}: mx1.new.test (ttl 5)"
    )
    assert tracker.changed_at == T0  # a resolver's answer never moves the clock


def test_superset_answer_blocks(world: World) -> None:
    for server in (*world.auth, *world.resolvers):
        flip(server, hosts=[*NEW, "mx1.old.test"])
    tracker = PropagationTracker(NEW)
    tracker.update(world.observe(T0))
    assert not tracker.update(world.observe(T0 + 1000)).propagated
    assert tracker.changed_at is None  # the authoritative set is not the expected one


def test_mixed_authoritative_answers_do_not_start_the_clock(dns_servers) -> None:
    world = make_world(dns_servers, n_auth=2, n_resolvers=1)
    flip(world.auth[0])
    flip(world.resolvers[0])
    tracker = PropagationTracker(NEW)
    progress = tracker.update(world.observe(T0))
    assert not progress.propagated and tracker.changed_at is None
    assert f"authoritative {world.auth[1].address}: mx1.old.test, mx2.old.test (ttl 30)" in (
        progress.reason
    )
    flip(world.auth[1])
    assert not tracker.update(world.observe(T0 + 50)).propagated
    assert tracker.changed_at == T0 + 50
    assert tracker.update(world.observe(T0 + 80)).propagated


def test_authoritative_rollback_restarts_the_wait(world: World) -> None:
    for server in (*world.auth, *world.resolvers):
        flip(server)
    tracker = PropagationTracker(NEW, {"old_ttl": OLD_TTL})
    tracker.update(world.observe(T0))
    assert tracker.changed_at == T0
    flip(world.auth[0], hosts=OLD, ttl=20)  # rolled back: caches may pick the old set up again
    assert not tracker.update(world.observe(T0 + 5)).propagated
    assert tracker.changed_at is None and tracker.old_ttl == 20
    flip(world.auth[0])
    tracker.update(world.observe(T0 + 10))
    assert tracker.changed_at == T0 + 10
    assert not tracker.update(world.observe(T0 + 29)).propagated
    assert tracker.update(world.observe(T0 + 30)).propagated


def test_lowered_old_ttl_is_the_one_waited_for(world: World) -> None:
    tracker = PropagationTracker(NEW)
    tracker.update(world.observe(T0))
    assert tracker.old_ttl == OLD_TTL
    world.auth[0].set_mx(DOMAIN, OLD, ttl=3)  # ops lowered the TTL before the change
    tracker.update(world.observe(T0 + 100))
    assert tracker.old_ttl == 3
    for server in (*world.auth, *world.resolvers):
        flip(server)
    tracker.update(world.observe(T0 + 200))
    assert not tracker.update(world.observe(T0 + 202)).propagated
    assert tracker.update(world.observe(T0 + 203)).propagated


def test_without_the_old_record_the_new_ttl_is_waited_for(world: World) -> None:
    for server in (*world.auth, *world.resolvers):
        flip(server)
    tracker = PropagationTracker(NEW)  # started after the change: never saw the old TTL
    tracker.update(world.observe(T0))
    assert tracker.wait_seconds == NEW_TTL
    assert not tracker.update(world.observe(T0 + 4)).propagated
    assert tracker.update(world.observe(T0 + 5)).propagated


@pytest.mark.parametrize("mode", ["nxdomain", "servfail", "timeout", "refused"])
def test_a_failing_resolver_blocks(world: World, mode: str) -> None:
    for server in (*world.auth, *world.resolvers):
        flip(server)
    world.resolvers[1].fail(DOMAIN, mode)
    tracker = PropagationTracker(NEW)
    tracker.update(world.observe(T0, timeout=0.5))
    progress = tracker.update(world.observe(T0 + 1000, timeout=0.5))
    assert not progress.propagated
    text = {"nxdomain": "NXDOMAIN", "servfail": "SERVFAIL", "timeout": "timeout"}
    text["refused"] = "REFUSED"
    assert (
        progress.reason == f"1 of 4 servers do not answer mx1.new.test, mx2.new.test yet: "
        f"resolver {world.resolvers[1].address}: {text[mode]}"
    )
    assert tracker.changed_at == T0
    world.resolvers[1].clear_failure(DOMAIN)
    assert tracker.update(world.observe(T0 + 1001)).propagated


@pytest.mark.parametrize("mode", ["servfail", "timeout", "refused"])
def test_a_failing_authoritative_server_blocks_but_keeps_the_clock(world: World, mode: str) -> None:
    for server in (*world.auth, *world.resolvers):
        flip(server)
    tracker = PropagationTracker(NEW)
    tracker.update(world.observe(T0))
    world.auth[0].fail(DOMAIN, mode)
    progress = tracker.update(world.observe(T0 + 100, timeout=0.5))
    assert not progress.propagated
    assert progress.reason.startswith(
        f"1 of 4 servers do not answer mx1.new.test, mx2.new.test yet: "
        f"authoritative {world.auth[0].address}"
    )
    assert tracker.changed_at == T0  # an error says nothing about the record
    world.auth[0].clear_failure(DOMAIN)
    assert tracker.update(world.observe(T0 + 101)).propagated


def test_authoritative_nxdomain_stops_the_clock(world: World) -> None:
    for server in (*world.auth, *world.resolvers):
        flip(server)
    tracker = PropagationTracker(NEW)
    tracker.update(world.observe(T0))
    world.auth[0].fail(DOMAIN, "nxdomain")  # a definite answer: the zone lost its MX records
    assert not tracker.update(world.observe(T0 + 100)).propagated
    assert tracker.changed_at is None and tracker.old_ttl is None  # no TTL in a negative answer
    world.auth[0].clear_failure(DOMAIN)
    tracker.update(world.observe(T0 + 110))
    assert tracker.changed_at == T0 + 110


def test_real_one_second_ttl_wait(dns_servers) -> None:
    auth, resolver = dns_servers(2)
    for server in (auth, resolver):
        server.set_mx(DOMAIN, OLD, ttl=1)
    check = MxCheck(expect=tuple(NEW), resolvers=(resolver.address,), authoritative=(auth.address,))
    tracker = PropagationTracker(NEW)
    tracker.update(check_mx(DOMAIN, check))
    for server in (auth, resolver):
        flip(server, ttl=1)
    deadline = time.monotonic() + 30
    while True:
        observation = check_mx(DOMAIN, check)
        if tracker.update(observation).propagated:
            break
        assert time.monotonic() < deadline, "never propagated"
        time.sleep(0.2)
    assert tracker.old_ttl == 1
    assert observation.observed_at >= tracker.changed_at + 1


# -- authoritative servers from NS records --------------------------------------------------------


def ns_world(dns_servers, domain: str = DOMAIN):
    """Two authoritative servers on 127.0.0.2 and 127.0.0.3 (one port), named by NS records."""
    auth1, auth2 = dns_servers(2, hosts=["127.0.0.2", "127.0.0.3"], shared_port=True)
    (resolver,) = dns_servers(1)
    for server in (auth1, auth2, resolver):
        server.set_mx(domain, OLD)
    resolver.set_ns("example.test", [("ns1.dns.test", "127.0.0.2"), ("ns2.dns.test", "127.0.0.3")])
    check = MxCheck(expect=tuple(NEW), resolvers=(resolver.address,))
    return auth1, auth2, resolver, check


def test_authoritative_servers_from_ns_records(dns_servers) -> None:
    auth1, auth2, resolver, check = ns_world(dns_servers)
    for server in (auth1, resolver):
        flip(server)
    port = auth1.port
    observation = check_mx(DOMAIN, check, ns_port=port, clock=lambda: T0)
    assert observation.lines() == [
        f"authoritative ns1.dns.test (127.0.0.2:{port}): mx1.new.test, mx2.new.test (ttl 5)",
        f"authoritative ns2.dns.test (127.0.0.3:{port}): mx1.old.test, mx2.old.test (ttl 2)",
        f"resolver {resolver.address}: mx1.new.test, mx2.new.test (ttl 5)",
    ]
    tracker = PropagationTracker(NEW)
    assert not tracker.update(observation).propagated
    flip(auth2)
    tracker.update(check_mx(DOMAIN, check, ns_port=port, clock=lambda: T0 + 1))
    observation = asyncio.run(acheck_mx(DOMAIN, check, ns_port=port, clock=lambda: T0 + 3))
    assert tracker.update(observation).propagated  # old TTL 2 from ns2


def test_ns_records_are_found_at_the_zone_apex(dns_servers) -> None:
    auth1, auth2, resolver, check = ns_world(dns_servers, domain="sub.example.test")
    observation = check_mx("sub.example.test", check, ns_port=auth1.port)
    assert [a.server for a in observation.authoritative] == [
        f"ns1.dns.test (127.0.0.2:{auth1.port})",
        f"ns2.dns.test (127.0.0.3:{auth1.port})",
    ]
    assert all(a.hosts == frozenset(OLD) for a in observation.answers)


def test_failed_ns_lookup_blocks(dns_servers) -> None:
    auth1, auth2, resolver, check = ns_world(dns_servers)
    for server in (auth1, auth2, resolver):
        flip(server)
    resolver.fail(DOMAIN, "servfail")
    observation = check_mx(DOMAIN, check, ns_port=auth1.port)
    assert observation.lines() == [
        f"authoritative NS of {DOMAIN}: SERVFAIL (NS lookup: servfail)",
        f"resolver {resolver.address}: SERVFAIL",
    ]
    tracker = PropagationTracker(NEW)
    assert not tracker.update(observation, now=T0 + 1000).propagated
    assert tracker.changed_at is None


# -- pure pieces ----------------------------------------------------------------------------------


def test_parse_server() -> None:
    assert parse_server("1.1.1.1") == Server("1.1.1.1", 53)
    assert parse_server("127.0.0.1:5353") == Server("127.0.0.1", 5353)
    assert parse_server("[::1]:5353") == Server("::1", 5353)
    assert parse_server("[2001:db8::1]") == Server("2001:db8::1", 53)
    assert parse_server("::1") == Server("::1", 53)
    assert str(Server("::1", 53)) == "[::1]:53"
    for bad in ("dns.google", "127.0.0.1:0", "127.0.0.1:x", "[::1]x", "[::1", "1.2.3.4:70000"):
        with pytest.raises(ValueError, match="DNS server"):
            parse_server(bad)


def test_tracker_state_survives_json() -> None:
    expected = frozenset(NEW)
    new = ServerAnswer("authoritative", "a", expected, 5)
    tracker = PropagationTracker(NEW, {"old_ttl": 30})
    tracker.update(Observation(DOMAIN, expected, (new,), T0))
    state = json.loads(json.dumps(tracker.to_state()))
    assert state == {"changed_at": T0, "old_ttl": 30, "new_ttl": 5, "checks": 1}
    restored = PropagationTracker(NEW, state)
    assert not restored.update(Observation(DOMAIN, expected, (new,), T0 + 29)).propagated
    assert restored.update(Observation(DOMAIN, expected, (new,), T0 + 30)).propagated
    with pytest.raises(ValueError, match="expected host"):
        PropagationTracker([])


def test_no_authoritative_answer_never_propagates() -> None:
    resolver = ServerAnswer("resolver", "r", frozenset(NEW), 5)
    progress = PropagationTracker(NEW).update(Observation(DOMAIN, frozenset(NEW), (resolver,), T0))
    assert not progress.propagated and progress.reason == "no authoritative server to ask"
