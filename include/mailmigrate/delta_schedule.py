"""When the scheduled after-hours deltas run: at every opening of the plan's delta window and,
with ``repeat``, again every ``repeat`` seconds while it stays open.

Built on :mod:`mailmigrate.window`, so the scheduled runs, the main DAG's window sensor and the
status page agree on every window, DST included: a window opening at a wall-clock time that does
not exist that day (spring forward) opens at the transition, one opening in the fall-back fold
opens at the earlier instant, and a window a DST gap squeezes to nothing does not open. "any"
opens at local midnight of every allowed weekday.

All functions take the current instant as an argument (aware datetimes); nothing here reads a
clock.
"""

from __future__ import annotations

import datetime as dt

import pendulum

from mailmigrate.plan import DeltaWindow
from mailmigrate.window import open_window, window_on

_HORIZON_DAYS = 16  # two weeks and a day: see window.next_window_start


def next_opening(after: dt.datetime, w: DeltaWindow) -> pendulum.DateTime:
    """The first opening of an allowed window strictly after ``after``.

    :raises ValueError: no weekday is allowed, no window opens within 16 days, or ``after`` is
        naive.
    """
    if not w.weekdays:
        raise ValueError("the delta window allows no weekday")
    if after.tzinfo is None or after.utcoffset() is None:
        raise ValueError(f"naive datetime {after.isoformat()}: pass an aware datetime")
    today = pendulum.instance(after).in_timezone(w.timezone).date()
    for offset in range(0, _HORIZON_DAYS):
        day = today + dt.timedelta(days=offset)
        if day.weekday() not in w.weekdays:
            continue
        start, end = window_on(day, w)
        if start > after and end > start:
            return start
    raise ValueError(f"no window opens within {_HORIZON_DAYS} days of {after.isoformat()}")


def next_run(after: dt.datetime, w: DeltaWindow, repeat: float | None = None) -> pendulum.DateTime:
    """The scheduled run after the one at ``after``: ``after + repeat`` when that is still
    inside the window ``after`` was in, else the next opening."""
    if repeat:
        window = open_window(after, w)
        candidate = pendulum.instance(after).add(seconds=repeat)
        if window is not None and candidate < window[1]:
            return candidate.in_timezone(w.timezone)
    return next_opening(after, w)


def first_run(now: dt.datetime, w: DeltaWindow) -> pendulum.DateTime:
    """The first run of a schedule started (or resumed, skipping what it missed) at ``now``:
    ``now`` itself when a window is open, so a delta starts in tonight's window even when the
    schedule began after it opened, else the next opening."""
    if open_window(now, w) is not None:
        return pendulum.instance(now).in_timezone(w.timezone)
    return next_opening(now, w)
