"""Sensors: wait for the MX change and for the after-hours window, deferred to the triggerer."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pendulum
from airflow.providers.standard.triggers.temporal import DateTimeTrigger
from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowException

from mailmigrate.mx import DEFAULT_QUERY_TIMEOUT, PropagationTracker, check_mx
from mailmigrate.plan import DeltaWindow
from mailmigrate.window import (
    WEEKDAY_NAMES,
    format_window,
    in_window,
    next_window_start,
    parse_weekdays,
    parse_window,
)
from mailmigrate_airflow.triggers import MxPropagationTrigger, mx_check

if TYPE_CHECKING:
    from airflow.sdk import Context


def _as_list(value: str | Sequence[str]) -> list[str]:
    """One host name alone is a list of one, not a list of characters."""
    return [value] if isinstance(value, str) else list(value)


class MxPropagationSensor(BaseSensorOperator):
    """
    Wait until a domain's MX change has propagated, checked in DNS from the triggerer.

    Always deferrable. ``execute`` makes one check from the worker first: it logs every server's
    answer and seeds the tracker with the old record's TTL while the old record is still
    served, so that memory travels in the trigger's serialized kwargs and survives a triggerer
    restart. Then it defers to :class:`~mailmigrate_airflow.triggers.MxPropagationTrigger`.

    :param domain: the mail domain whose MX records change. (templated)
    :param expect: the MX host names the domain must have after the change (a name or a list).
        (templated)
    :param resolvers: resolvers to ask, ``host`` or ``host:port``; the system's when empty.
    :param authoritative: authoritative servers to ask; the domain's NS records when empty.
    :param poke_interval: seconds (or a timedelta) between checks.
    :param timeout: seconds (or a timedelta) to wait in all before the task fails.
    :param ns_port: the port of name servers found through NS records (53 outside tests).
    :param query_timeout: seconds per DNS query.
    """

    template_fields: Sequence[str] = ("domain", "expect", "resolvers", "authoritative")

    def __init__(
        self,
        *,
        domain: str,
        expect: Sequence[str],
        resolvers: Sequence[str] = (),
        authoritative: Sequence[str] = (),
        poke_interval: float | timedelta = 600.0,
        timeout: float | timedelta = 7 * 86400.0,
        ns_port: int = 53,
        query_timeout: float = DEFAULT_QUERY_TIMEOUT,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, timeout=timeout, **kwargs)
        self.domain = domain
        self.expect = _as_list(expect)
        self.resolvers = _as_list(resolvers)
        self.authoritative = _as_list(authoritative)
        self.ns_port = ns_port
        self.query_timeout = query_timeout

    def execute(self, context: Context) -> dict[str, Any] | None:
        check = mx_check(self)
        tracker = PropagationTracker(self.expect)
        observation = check_mx(self.domain, check, timeout=self.query_timeout, ns_port=self.ns_port)
        progress = tracker.update(observation)
        expected = ", ".join(sorted(tracker.expected))
        if progress.propagated:
            self.log.info(
                "MX of %s is %s on every server: %s", self.domain, expected, progress.reason
            )
            return self._summary(self.domain, sorted(tracker.expected), tracker.checks)
        self.log.info(
            "Waiting for the MX of %s to be %s everywhere; the DNS servers answer:",
            self.domain,
            expected,
        )
        for line in observation.lines():
            self.log.info("  %s", line)
        self.log.info(
            "Checking every %.3g s in the triggerer (no worker held); the log lists the answers "
            "again when they change",
            self.poke_interval,
        )
        self.defer(
            trigger=MxPropagationTrigger(
                domain=self.domain,
                expect=self.expect,
                resolvers=self.resolvers,
                authoritative=self.authoritative,
                poke_interval=self.poke_interval,
                tracker_state=tracker.to_state(),
                ns_port=self.ns_port,
                query_timeout=self.query_timeout,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def execute_complete(
        self, context: Context, event: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Return a small summary for XCom once the trigger reports the change as propagated."""
        if not event or event.get("status") != "propagated":
            raise AirflowException(
                f"MX check for {self.domain} ended without propagation: {event!r}"
            )
        for line in event.get("answers", []):
            self.log.info("%s", line)
        return self._summary(event["domain"], event["mx"], event.get("checks", 0))

    @staticmethod
    def _summary(domain: str, mx: list[str], checks: int) -> dict[str, Any]:
        return {
            "domain": domain,
            "mx": list(mx),
            "checks": checks,
            "propagated_at": pendulum.now("UTC").isoformat(),
        }


class DeltaWindowSensor(BaseSensorOperator):
    """
    Wait until the after-hours window opens, in the plan's time zone (DST-correct).

    Returns at once inside the window; otherwise defers on the standard provider's
    ``DateTimeTrigger`` until the next window opens (see :mod:`mailmigrate.window`). On resuming
    it checks again, so a task resumed late (triggerer or workers down) never starts a delta
    outside the window.

    :param timezone: the IANA time zone of the window, e.g. ``Europe/Berlin``.
    :param window: ``"HH:MM-HH:MM"`` (may cross midnight: it belongs to the day it opens),
        a ``(start, end)`` pair of times, or ``None``/``"any"`` for the whole day.
    :param weekdays: the days on which a window may open: names (``"mon"``) or numbers (Monday 0).
    """

    def __init__(
        self,
        *,
        timezone: str = "UTC",
        window: str | tuple[dt.time, dt.time] | None = None,
        weekdays: Sequence[str | int] = WEEKDAY_NAMES,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.timezone = timezone
        if isinstance(window, tuple):
            window = format_window(window)
        self.window = window
        self.weekdays = list(parse_weekdays(weekdays))
        self.delta_window  # noqa: B018 - fail at DAG parse time on a bad window or time zone

    @property
    def delta_window(self) -> DeltaWindow:
        pendulum.timezone(self.timezone)  # raises on an unknown zone
        return DeltaWindow(
            timezone=self.timezone,
            window=parse_window(self.window),
            weekdays=tuple(self.weekdays),
        )

    def execute(self, context: Context) -> None:
        window = self.delta_window
        now = pendulum.now("UTC")
        if in_window(now, window):
            self.log.info(
                "Inside the delta window (%s, %s): go", self.window or "any", self.timezone
            )
            return
        moment = next_window_start(now, window)
        self.log.info(
            "Outside the delta window (%s, %s): waiting until %s (%s UTC)",
            self.window or "any",
            self.timezone,
            moment.isoformat(),
            moment.in_timezone("UTC").isoformat(),
        )
        self.defer(
            trigger=DateTimeTrigger(moment=moment.in_timezone("UTC")),
            method_name="execute_complete",
        )

    def execute_complete(self, context: Context, event: Any = None) -> None:
        """Return once the window is open; defer again if it closed before the task resumed."""
        self.execute(context)
