"""Triggers: the waiting parts of a migration, run in the triggerer (asyncio, no database)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from mailmigrate.mx import DEFAULT_QUERY_TIMEOUT, PropagationTracker, acheck_mx
from mailmigrate.plan import MxCheck


def mx_check(waiter: Any) -> MxCheck:
    """The engine's :class:`~mailmigrate.plan.MxCheck` of the MX sensor, its trigger or the
    sensor as the status page deserializes it: ``expect``, and where set ``resolvers``,
    ``authoritative`` and ``poke_interval``."""
    poke_interval = getattr(waiter, "poke_interval", None)
    return MxCheck(
        expect=tuple(waiter.expect),
        resolvers=tuple(getattr(waiter, "resolvers", None) or ()),
        authoritative=tuple(getattr(waiter, "authoritative", None) or ()),
        **({"poke_interval": float(poke_interval)} if poke_interval is not None else {}),
    )


class MxPropagationTrigger(BaseTrigger):
    """
    Wait until a domain's MX change has propagated to every resolver and authoritative server.

    Every ``poke_interval`` seconds it asks every server (see :func:`mailmigrate.mx.acheck_mx`),
    logs each server's answer, and feeds the answers to a
    :class:`~mailmigrate.mx.PropagationTracker`. When the tracker says the change has propagated
    (every server answers the expected hosts and the old record's TTL has passed), it yields one
    event ``{"status": "propagated", ...}``. When only the TTL wait is left it sleeps just that
    long. It never gives up by itself: the sensor's deferral timeout bounds the wait.

    The triggerer stores these kwargs once, when the task defers; the tracker's later progress
    lives in memory only. After a triggerer restart the trigger continues from the state the
    sensor seeded (so the old TTL seen before the change survives) and restarts the clock at its
    first check that sees the change: the wait can only get longer, never shorter.

    :param domain: the mail domain whose MX records changed.
    :param expect: the MX host names the domain must have after the change.
    :param resolvers: resolvers to ask, ``host`` or ``host:port``; the system's when empty.
    :param authoritative: authoritative servers to ask; the domain's NS records when empty.
    :param poke_interval: seconds between checks.
    :param tracker_state: the tracker's memory (:meth:`PropagationTracker.to_state`) to continue.
    :param ns_port: the port of name servers found through NS records.
    :param query_timeout: seconds per DNS query.
    """

    def __init__(
        self,
        domain: str,
        expect: Sequence[str],
        resolvers: Sequence[str] = (),
        authoritative: Sequence[str] = (),
        poke_interval: float = 600.0,
        tracker_state: dict[str, Any] | None = None,
        ns_port: int = 53,
        query_timeout: float = DEFAULT_QUERY_TIMEOUT,
    ) -> None:
        super().__init__()
        self.domain = domain
        self.expect = list(expect)
        self.resolvers = list(resolvers)
        self.authoritative = list(authoritative)
        self.poke_interval = float(poke_interval)
        self.tracker_state = dict(tracker_state) if tracker_state else None
        self.ns_port = int(ns_port)
        self.query_timeout = float(query_timeout)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "mailmigrate_airflow.triggers.MxPropagationTrigger",
            {
                "domain": self.domain,
                "expect": list(self.expect),
                "resolvers": list(self.resolvers),
                "authoritative": list(self.authoritative),
                "poke_interval": self.poke_interval,
                "tracker_state": dict(self.tracker_state) if self.tracker_state else None,
                "ns_port": self.ns_port,
                "query_timeout": self.query_timeout,
            },
        )

    @property
    def check(self) -> MxCheck:
        return mx_check(self)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Check, log, update the tracker; yield once propagated, else sleep and check again.

        The log names the expected hosts, lists every server's answer at the first check and
        whenever an answer changes, and otherwise says in one line that nothing changed."""
        tracker = PropagationTracker(self.expect, self.tracker_state)
        check = self.check
        expected = ", ".join(sorted(tracker.expected))
        previous: list[tuple] | None = None
        while True:
            observation = await acheck_mx(
                self.domain, check, timeout=self.query_timeout, ns_port=self.ns_port
            )
            progress = tracker.update(observation)
            self.tracker_state = tracker.to_state()
            lines = observation.lines()
            # What each server says, without the TTL a resolver's cache counts down.
            answers = [(a.role, a.server, a.hosts, a.error) for a in observation.answers]
            if progress.propagated:
                self.log.info(
                    "MX of %s has propagated (check %d): %s",
                    self.domain,
                    tracker.checks,
                    progress.reason,
                )
                yield TriggerEvent(
                    {
                        "status": "propagated",
                        "domain": self.domain,
                        "mx": sorted(tracker.expected),
                        "checks": tracker.checks,
                        "changed_at": tracker.changed_at,
                        "waited_ttl": tracker.wait_seconds,
                        "answers": lines,
                    }
                )
                return
            delay = self.poke_interval
            if progress.remaining is not None:
                delay = min(delay, max(progress.remaining, 0.1))
            if answers != previous:
                what = "answers" if previous is None else "answers changed"
                self.log.info(
                    "MX of %s, check %d, expecting %s: %s",
                    self.domain,
                    tracker.checks,
                    expected,
                    what,
                )
                for line in lines:
                    self.log.info("  %s", line)
                self.log.info(
                    "Not propagated yet: %s; next check in %.3g s", progress.reason, delay
                )
            else:
                self.log.info(
                    "MX of %s, check %d: no change, still waiting for %s; next check in %.3g s",
                    self.domain,
                    tracker.checks,
                    expected,
                    delay,
                )
            previous = answers
            await asyncio.sleep(delay)
