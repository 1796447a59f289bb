"""After-hours window arithmetic for delta copies, in the plan's time zone (DST-correct).

A window is a daily interval of wall-clock times, ``(start, end)``, or ``None`` for the whole day
("any"). Each window belongs to the day on which it opens: ``19:00-06:00`` on Friday runs from
Friday 19:00 to Saturday 06:00, and is open when Friday is an allowed weekday. ``start == end``
means 24 hours. The start is inclusive, the end exclusive.

Wall-clock times that do not exist (the spring-forward gap) mean the first valid instant after
them, i.e. the moment of the transition; times that happen twice (the fall-back fold) mean the
earlier instant.

Results are pendulum DateTimes in the plan's time zone; ``.in_timezone("UTC")`` gives the instant
in UTC. Compare them with ``<``/``>`` or in UTC: by PEP 495, a time inside a fall-back fold never
compares *equal* to a datetime in another zone, even at the same instant.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from zoneinfo import ZoneInfo

import pendulum

from mailmigrate.plan import DeltaWindow

WEEKDAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_UTC = dt.UTC
_WINDOW_RE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


def parse_window(text: str | None) -> tuple[dt.time, dt.time] | None:
    """``"19:00-06:00"`` -> ``(time(19), time(6))``; ``None``, ``""`` or ``"any"`` -> ``None``.

    :raises ValueError: not ``HH:MM-HH:MM`` with valid times.
    """
    if text is None or text.strip().lower() in ("", "any"):
        return None
    match = _WINDOW_RE.match(text)
    if not match:
        raise ValueError(f"window {text!r}: expected HH:MM-HH:MM or 'any'")
    sh, sm, eh, em = (int(g) for g in match.groups())
    try:
        return dt.time(sh, sm), dt.time(eh, em)
    except ValueError as exc:
        raise ValueError(f"window {text!r}: {exc}") from None


def format_window(window: tuple[dt.time, dt.time] | None) -> str | None:
    """The inverse of :func:`parse_window`: ``"19:00-06:00"``, or ``None`` for any time."""
    if window is None:
        return None
    return f"{window[0]:%H:%M}-{window[1]:%H:%M}"


def parse_weekdays(values: Iterable[str | int]) -> tuple[int, ...]:
    """``["mon", "Tue", 4]`` -> ``(0, 1, 4)`` (Monday = 0; names by their first three letters).

    :raises ValueError: an unknown name or a number outside 0-6.
    """
    days: set[int] = set()
    for value in values:
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 6:
            days.add(value)
        elif isinstance(value, str) and value.strip().lower()[:3] in WEEKDAY_NAMES:
            days.add(WEEKDAY_NAMES.index(value.strip().lower()[:3]))
        else:
            raise ValueError(
                f"weekday {value!r}: expected one of {', '.join(WEEKDAY_NAMES)} or 0-6"
            )
    return tuple(sorted(days))


def local_instant(day: dt.date, wall: dt.time, timezone: str) -> pendulum.DateTime:
    """The instant at which the wall clock in ``timezone`` shows ``day`` ``wall``.

    In a spring-forward gap: the first valid instant after it (the transition). In a fall-back
    fold: the earlier of the two instants.
    """
    zone = ZoneInfo(timezone)
    naive = dt.datetime.combine(day, wall)
    earlier = naive.replace(tzinfo=zone, fold=0).astimezone(_UTC)
    if earlier.astimezone(zone).replace(tzinfo=None) == naive:
        return pendulum.instance(earlier).in_timezone(timezone)
    # In the gap, fold=0 applies the offset before the transition (an instant after it) and
    # fold=1 the offset after it (an instant before it): the transition lies in (low, high].
    high = int(earlier.timestamp())
    low = int(naive.replace(tzinfo=zone, fold=1).astimezone(_UTC).timestamp())
    after_offset = earlier.astimezone(zone).utcoffset()
    while high - low > 1:
        middle = (low + high) // 2
        if dt.datetime.fromtimestamp(middle, zone).utcoffset() == after_offset:
            high = middle
        else:
            low = middle
    return pendulum.from_timestamp(high, tz=timezone)


def window_on(day: dt.date, w: DeltaWindow) -> tuple[pendulum.DateTime, pendulum.DateTime]:
    """The window that opens on ``day`` as ``(start, end)`` instants, allowed weekday or not."""
    start_wall, end_wall = w.window if w.window is not None else (dt.time(0), dt.time(0))
    end_day = day if end_wall > start_wall else day + dt.timedelta(days=1)
    return local_instant(day, start_wall, w.timezone), local_instant(end_day, end_wall, w.timezone)


def open_window(
    now: dt.datetime, w: DeltaWindow
) -> tuple[pendulum.DateTime, pendulum.DateTime] | None:
    """The window ``now`` is inside, as ``(start, end)``; ``None`` when outside every window."""
    moment = _aware(now)
    today = pendulum.instance(moment).in_timezone(w.timezone).date()
    # A window lasts at most a day (plus a DST hour), so only yesterday's and today's can be open.
    for day in (today - dt.timedelta(days=1), today):
        if day.weekday() not in w.weekdays:
            continue
        start, end = window_on(day, w)
        if start <= moment < end:
            return start, end
    return None


def in_window(now: dt.datetime, w: DeltaWindow) -> bool:
    """Whether ``now`` (an aware datetime) is inside an allowed window."""
    return open_window(now, w) is not None


def next_window_start(now: dt.datetime, w: DeltaWindow) -> pendulum.DateTime:
    """When the next allowed window opens: ``now`` itself if one is open already.

    :returns: an aware pendulum DateTime in the plan's time zone.
    :raises ValueError: no weekday is allowed, or ``now`` is naive.
    """
    if not w.weekdays:
        raise ValueError("the delta window allows no weekday")
    moment = _aware(now)
    if in_window(moment, w):
        return pendulum.instance(moment).in_timezone(w.timezone)
    today = pendulum.instance(moment).in_timezone(w.timezone).date()
    # Two weeks and a day: a single allowed weekday whose window a DST gap squeezes to nothing.
    for offset in range(0, 16):
        day = today + dt.timedelta(days=offset)
        if day.weekday() not in w.weekdays:
            continue
        start, end = window_on(day, w)
        # A window squeezed to nothing by a spring-forward gap (e.g. 02:00-02:30) never opens.
        if start >= moment and end > start:
            return start
    raise ValueError(f"no window opens within 16 days of {moment.isoformat()}")


def _aware(now: dt.datetime) -> dt.datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"naive datetime {now.isoformat()}: pass an aware datetime")
    return now
