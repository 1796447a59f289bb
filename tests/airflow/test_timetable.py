"""The scheduled deltas' timetable as the scheduler asks it: runs at each opening of the plan's
window across midnight and DST (the scheduler's clock injected), nothing made up after a pause,
repeats inside the window, and a round trip through DAG serialization (the plugin registers it)."""

from __future__ import annotations

import pendulum
from airflow.timetables.base import DataInterval, TimeRestriction

from mailmigrate_airflow import timetable as timetables
from mailmigrate_airflow.timetable import AfterHoursTimetable

BERLIN = "Europe/Berlin"
NO_CATCHUP = TimeRestriction(earliest=None, latest=None, catchup=False)


def berlin(*args: int) -> pendulum.DateTime:
    return pendulum.datetime(*args, tz=BERLIN)


def runs(table: AfterHoursTimetable, now: pendulum.DateTime, count: int, monkeypatch) -> list:
    """The next ``count`` runs as the scheduler would create them, its clock at each run."""
    monkeypatch.setattr(timetables, "_utcnow", lambda: now)
    found, last = [], None
    for _ in range(count):
        info = table.next_dagrun_info(last_automated_data_interval=last, restriction=NO_CATCHUP)
        found.append(info.run_after.in_timezone(BERLIN))
        last = info.data_interval
        monkeypatch.setattr(timetables, "_utcnow", lambda at=info.run_after: at)
    return found


def test_runs_open_each_workday_evening_across_midnight_and_dst(monkeypatch) -> None:
    table = AfterHoursTimetable(BERLIN, "19:00-06:00", [0, 1, 2, 3, 4])
    # Thursday 27 March 2025, noon; DST starts Sunday 30 March (02:00 CET -> 03:00 CEST).
    found = runs(table, berlin(2025, 3, 27, 12), 4, monkeypatch)
    assert found == [berlin(2025, 3, 27, 19), berlin(2025, 3, 28, 19), berlin(2025, 3, 31, 19),
                     berlin(2025, 4, 1, 19)]  # fmt: skip
    assert [run.in_timezone("UTC").hour for run in found] == [18, 18, 17, 17]


def test_started_inside_a_window_runs_now_and_a_window_in_the_dst_gap_opens_at_the_transition(
    monkeypatch,
) -> None:
    table = AfterHoursTimetable(BERLIN, "02:30-05:00", [6])
    assert runs(table, berlin(2025, 3, 30, 4), 1, monkeypatch) == [berlin(2025, 3, 30, 4)]
    (first,) = runs(table, berlin(2025, 3, 29, 12), 1, monkeypatch)
    assert first.in_timezone("UTC") == pendulum.datetime(2025, 3, 30, 1, tz="UTC")  # 03:00 CEST


def test_after_a_pause_missed_windows_are_not_made_up(monkeypatch) -> None:
    table = AfterHoursTimetable(BERLIN, "19:00-06:00", [0, 1, 2, 3, 4])
    last = DataInterval.exact(berlin(2025, 1, 6, 19))  # Monday; then paused until Thursday noon
    monkeypatch.setattr(timetables, "_utcnow", lambda: berlin(2025, 1, 9, 12))
    info = table.next_dagrun_info(last_automated_data_interval=last, restriction=NO_CATCHUP)
    assert info.run_after == berlin(2025, 1, 9, 19)


def test_repeats_inside_an_any_window_seconds_apart(monkeypatch) -> None:
    table = AfterHoursTimetable("UTC", None, list(range(7)), repeat=5)
    start = pendulum.datetime(2025, 1, 1, 23, 59, 50, tz="UTC")
    assert [r.in_timezone("UTC") for r in runs(table, start, 4, monkeypatch)] == [
        start, start.add(seconds=5), pendulum.datetime(2025, 1, 2, tz="UTC"),
        pendulum.datetime(2025, 1, 2, 0, 0, 5, tz="UTC")]  # fmt: skip


def test_the_timetable_survives_serialization_and_describes_itself() -> None:
    from airflow.sdk import DAG
    from airflow.serialization.serialized_objects import DagSerialization

    table = AfterHoursTimetable(BERLIN, "19:00-06:00", [0, 1, 2, 3, 4], repeat=7200)
    with DAG("timetable_round_trip", schedule=table) as dag:
        pass
    restored = DagSerialization.from_dict(DagSerialization.to_dict(dag)).timetable
    assert restored == table and isinstance(restored, AfterHoursTimetable)
    assert (
        restored.summary == "after hours 19:00-06:00 mon-fri (Europe/Berlin), every 2 h inside it"
    )
