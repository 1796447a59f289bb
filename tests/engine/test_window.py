"""After-hours window arithmetic: across midnight, weekends, "any", DST in Europe/Berlin."""

from __future__ import annotations

import datetime as dt
from datetime import time

import pendulum
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailmigrate.plan import DeltaWindow
from mailmigrate.window import (
    in_window,
    local_instant,
    next_window_start,
    open_window,
    parse_weekdays,
    parse_window,
)

BERLIN = "Europe/Berlin"
WORKDAYS = (0, 1, 2, 3, 4)
EVERY_DAY = (0, 1, 2, 3, 4, 5, 6)
EVENING = DeltaWindow(BERLIN, (time(19), time(6)), WORKDAYS)
ANY_WORKDAY = DeltaWindow(BERLIN, None, WORKDAYS)


def berlin(*args: int) -> pendulum.DateTime:
    return pendulum.datetime(*args, tz=BERLIN)


def utc(*args: int) -> pendulum.DateTime:
    return pendulum.datetime(*args, tz="UTC")


def test_calendar_facts_the_tests_rely_on() -> None:
    assert berlin(2025, 1, 10).weekday() == 4  # a Friday
    assert berlin(2025, 3, 30).weekday() == 6  # spring forward: Sunday, 02:00 CET -> 03:00 CEST
    assert berlin(2025, 10, 26).weekday() == 6  # fall back: Sunday, 03:00 CEST -> 02:00 CET


# -- across midnight and weekends -----------------------------------------------------------------


def test_friday_window_runs_into_saturday_morning() -> None:
    assert in_window(berlin(2025, 1, 10, 19, 0), EVENING)
    assert in_window(berlin(2025, 1, 11, 2, 0), EVENING)  # Saturday 02:00 belongs to Friday
    assert in_window(berlin(2025, 1, 11, 5, 59, 59), EVENING)
    assert not in_window(berlin(2025, 1, 11, 6, 0), EVENING)  # the end is exclusive
    assert not in_window(berlin(2025, 1, 10, 18, 59, 59), EVENING)


def test_sunday_night_is_closed_when_sunday_is_not_allowed() -> None:
    assert not in_window(berlin(2025, 1, 12, 23, 0), EVENING)
    assert not in_window(berlin(2025, 1, 13, 2, 0), EVENING)  # Monday 02:00 belongs to Sunday
    assert next_window_start(berlin(2025, 1, 13, 2, 0), EVENING) == utc(2025, 1, 13, 18, 0)


def test_weekend_waits_until_monday_evening() -> None:
    start = next_window_start(berlin(2025, 1, 11, 7, 0), EVENING)
    assert start == utc(2025, 1, 13, 18, 0)
    assert start.timezone_name == BERLIN
    assert (start.hour, start.minute) == (19, 0)


def test_before_opening_waits_until_the_same_evening() -> None:
    assert next_window_start(berlin(2025, 1, 10, 18, 0), EVENING) == berlin(2025, 1, 10, 19, 0)


def test_inside_the_window_next_start_is_now() -> None:
    now = berlin(2025, 1, 14, 23, 15, 7)
    assert next_window_start(now, EVENING) == now
    assert open_window(now, EVENING) == (berlin(2025, 1, 14, 19), berlin(2025, 1, 15, 6))


def test_now_in_another_time_zone() -> None:
    now = pendulum.datetime(2025, 1, 10, 12, 30, tz="America/New_York")  # 18:30 in Berlin
    assert not in_window(now, EVENING)
    assert next_window_start(now, EVENING) == utc(2025, 1, 10, 18, 0)
    assert in_window(dt.datetime(2025, 1, 10, 18, 0, tzinfo=dt.UTC), EVENING)


def test_same_day_window_on_weekends_only() -> None:
    weekend = DeltaWindow(BERLIN, (time(9), time(17)), (5, 6))
    assert next_window_start(berlin(2025, 1, 10, 10), weekend) == berlin(2025, 1, 11, 9)
    assert in_window(berlin(2025, 1, 12, 16, 59), weekend)
    assert next_window_start(berlin(2025, 1, 12, 17), weekend) == berlin(2025, 1, 18, 9)


def test_equal_start_and_end_mean_24_hours() -> None:
    mondays = DeltaWindow(BERLIN, (time(8), time(8)), (0,))
    assert open_window(berlin(2025, 1, 14, 7, 59), mondays) == (
        berlin(2025, 1, 13, 8),
        berlin(2025, 1, 14, 8),
    )
    assert not in_window(berlin(2025, 1, 14, 8), mondays)


# -- "any" ----------------------------------------------------------------------------------------


def test_any_window_only_weekdays_matter() -> None:
    assert in_window(berlin(2025, 1, 8, 12), ANY_WORKDAY)
    assert in_window(berlin(2025, 1, 10, 23, 59, 59), ANY_WORKDAY)
    assert not in_window(berlin(2025, 1, 11, 0, 0), ANY_WORKDAY)
    assert not in_window(berlin(2025, 1, 12, 23, 59, 59), ANY_WORKDAY)
    assert next_window_start(berlin(2025, 1, 11, 12), ANY_WORKDAY) == utc(2025, 1, 12, 23, 0)
    now = berlin(2025, 1, 8, 3, 4, 5)
    assert next_window_start(now, ANY_WORKDAY) == now


def test_any_window_every_day_is_always_open() -> None:
    always = DeltaWindow(BERLIN, None, EVERY_DAY)
    for hour in range(0, 24 * 7, 5):
        assert in_window(utc(2025, 3, 27) + dt.timedelta(hours=hour), always)


# -- DST, spring forward (2025-03-30 02:00 CET -> 03:00 CEST, at 01:00 UTC) -----------------------


def test_start_in_the_spring_gap_opens_at_the_transition() -> None:
    assert local_instant(dt.date(2025, 3, 30), time(2, 30), BERLIN) == utc(2025, 3, 30, 1, 0)
    w = DeltaWindow(BERLIN, (time(2, 30), time(5)), EVERY_DAY)
    assert next_window_start(berlin(2025, 3, 29, 12), w) == utc(2025, 3, 30, 1, 0)
    assert not in_window(utc(2025, 3, 30, 0, 59, 59), w)  # 01:59:59 CET
    assert in_window(utc(2025, 3, 30, 1, 0), w)  # 03:00 CEST
    assert in_window(utc(2025, 3, 30, 2, 59, 59), w)  # 04:59:59 CEST
    assert not in_window(utc(2025, 3, 30, 3, 0), w)  # 05:00 CEST
    assert next_window_start(utc(2025, 3, 30, 3, 0), w) == utc(2025, 3, 31, 0, 30)


def test_overnight_window_over_the_spring_change_is_an_hour_shorter() -> None:
    w = DeltaWindow(BERLIN, (time(19), time(6)), (5,))  # Saturday evening only
    start, end = open_window(utc(2025, 3, 29, 23), w) or (None, None)
    assert (start, end) == (utc(2025, 3, 29, 18), utc(2025, 3, 30, 4))  # 19:00 CET, 06:00 CEST
    assert in_window(utc(2025, 3, 30, 3, 59, 59), w)
    assert not in_window(utc(2025, 3, 30, 4, 0), w)


def test_end_in_the_spring_gap_closes_at_the_transition() -> None:
    w = DeltaWindow(BERLIN, (time(22), time(2, 30)), (5,))
    assert in_window(utc(2025, 3, 30, 0, 59, 59), w)
    assert not in_window(utc(2025, 3, 30, 1, 0), w)


def test_window_inside_the_spring_gap_does_not_open_that_day() -> None:
    w = DeltaWindow(BERLIN, (time(2), time(2, 30)), EVERY_DAY)
    assert not in_window(utc(2025, 3, 30, 1, 0), w)
    assert next_window_start(berlin(2025, 3, 29, 12), w) == utc(2025, 3, 31, 0, 0)  # 02:00 CEST


# -- DST, fall back (2025-10-26 03:00 CEST -> 02:00 CET, at 01:00 UTC) ----------------------------


def test_start_in_the_fall_fold_uses_the_earlier_instant() -> None:
    # Compared in UTC: Python never finds a time in the fold equal to one in another zone (PEP 495).
    first = local_instant(dt.date(2025, 10, 26), time(2, 30), BERLIN)
    assert first.in_timezone("UTC") == utc(2025, 10, 26, 0, 30)
    assert first.utcoffset() == dt.timedelta(hours=2)  # still summer time
    w = DeltaWindow(BERLIN, (time(2, 30), time(4)), EVERY_DAY)
    start = next_window_start(berlin(2025, 10, 25, 12), w)
    assert start.in_timezone("UTC") == utc(2025, 10, 26, 0, 30)
    assert in_window(utc(2025, 10, 26, 1, 45), w)  # 02:45 CET, the second pass
    assert in_window(utc(2025, 10, 26, 2, 59, 59), w)  # 03:59:59 CET
    assert not in_window(utc(2025, 10, 26, 3, 0), w)


def test_end_in_the_fall_fold_uses_the_earlier_instant() -> None:
    w = DeltaWindow(BERLIN, (time(22), time(2, 30)), (5,))
    assert in_window(utc(2025, 10, 26, 0, 29, 59), w)
    assert not in_window(utc(2025, 10, 26, 0, 30), w)  # 02:30 CEST
    assert not in_window(utc(2025, 10, 26, 1, 30), w)  # 02:30 CET, the second one


def test_any_window_on_the_fall_back_day_lasts_25_hours() -> None:
    sundays = DeltaWindow(BERLIN, None, (6,))
    start, end = open_window(utc(2025, 10, 26, 12), sundays) or (None, None)
    assert (start, end) == (utc(2025, 10, 25, 22), utc(2025, 10, 26, 23))
    assert end - start == dt.timedelta(hours=25)


# -- input ----------------------------------------------------------------------------------------


def test_naive_now_is_rejected() -> None:
    with pytest.raises(ValueError, match="naive"):
        in_window(dt.datetime(2025, 1, 10, 20), EVENING)
    with pytest.raises(ValueError, match="naive"):
        next_window_start(dt.datetime(2025, 1, 10, 20), EVENING)


def test_no_weekday_is_rejected() -> None:
    with pytest.raises(ValueError, match="no weekday"):
        next_window_start(utc(2025, 1, 10), DeltaWindow(BERLIN, None, ()))


def test_parse_window_and_weekdays() -> None:
    assert parse_window("19:00-06:00") == (time(19), time(6))
    assert parse_window(" 7:30 - 8:05 ") == (time(7, 30), time(8, 5))
    assert parse_window("any") is None and parse_window(None) is None
    for bad in ("19-06", "25:00-06:00", "19:00", "19:60-06:00"):
        with pytest.raises(ValueError, match="window"):
            parse_window(bad)
    assert parse_weekdays(["fri", "Mon", "tuesday", 6, "mon"]) == (0, 1, 4, 6)
    for bad in (["funday"], [7], [True]):
        with pytest.raises(ValueError, match="weekday"):
            parse_weekdays(bad)


# -- properties over a whole year, both DST changes included --------------------------------------

WINDOWS = [
    EVENING,
    ANY_WORKDAY,
    DeltaWindow(BERLIN, (time(2, 30), time(5)), EVERY_DAY),
    DeltaWindow(BERLIN, (time(22), time(2, 30)), (5, 6)),
    DeltaWindow(BERLIN, (time(2), time(2, 30)), (6,)),
    DeltaWindow("America/New_York", (time(1, 30), time(1, 45)), (6,)),
]
YEAR_2025 = (int(utc(2025, 1, 1).timestamp()), int(utc(2026, 1, 1).timestamp()))


@settings(max_examples=400, deadline=None, database=None)
@given(
    window=st.sampled_from(WINDOWS),
    seconds=st.integers(*YEAR_2025),
    fraction=st.floats(0, 1, exclude_max=True),
)
def test_next_start_is_open_and_nothing_before_it_is(
    window: DeltaWindow, seconds: int, fraction: float
) -> None:
    now = pendulum.from_timestamp(seconds)
    start = next_window_start(now, window)
    assert start >= now
    assert in_window(start, window)
    if start > now:
        assert not in_window(start - dt.timedelta(seconds=1), window)
        between = now + dt.timedelta(seconds=int((start - now).total_seconds() * fraction))
        assert not in_window(between, window)
