"""Quiet means done: the per-account delta record, the quiet/maximum decision, the locks, and
when the scheduled deltas run (across midnight, weekends, DST in Europe/Berlin; clock injected)."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import threading
from datetime import time
from pathlib import Path

import pendulum
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailmigrate import quiet
from mailmigrate.delta_schedule import first_run, next_opening, next_run
from mailmigrate.plan import DeltaWindow
from mailmigrate.quiet import DeltaRecord, after_pass, due
from mailmigrate.window import in_window

BERLIN = "Europe/Berlin"
WORKDAYS = (0, 1, 2, 3, 4)
EVERY_DAY = (0, 1, 2, 3, 4, 5, 6)
EVENING = DeltaWindow(BERLIN, (time(19), time(6)), WORKDAYS)
HOUR = 3600.0
RELEASE = dt.datetime(2025, 3, 3, 14, 0, tzinfo=dt.UTC)


def berlin(*args: int) -> pendulum.DateTime:
    return pendulum.datetime(*args, tz=BERLIN)


def utc(*args: int) -> pendulum.DateTime:
    return pendulum.datetime(*args, tz="UTC")


def released(account: str = "alice@example.com") -> DeltaRecord:
    return DeltaRecord(account, released_at=RELEASE, handed_over_at=RELEASE)


def night(record: DeltaRecord, hours_after_release: float, copied: int, ok: bool = True):
    """A delta pass that starts ``hours_after_release`` after the release and lasts a minute."""
    started = RELEASE + dt.timedelta(hours=hours_after_release)
    return after_pass(record, started=started, ended=started + dt.timedelta(minutes=1),
                      copied=copied, ok=ok, quiet_period=48 * HOUR, max_after_mx=7 * 24 * HOUR)  # fmt: skip


# -- the decision ---------------------------------------------------------------------------
def test_no_new_mail_finishes_once_the_quiet_period_has_passed_since_the_release() -> None:
    record = released()
    assert night(record, 5, 0) == quiet.Outcome(False)
    assert night(record, 29, 0) == quiet.Outcome(False)
    outcome = night(record, 53, 0)
    assert outcome == quiet.Outcome(True, quiet.QUIET, None)
    assert record.done and record.done_reason == "quiet" and record.warning is None
    assert record.last_arrival_at is None and record.quiet_since == RELEASE
    assert record.deltas == 3 and record.arrivals == 0
    assert record.done_at == RELEASE + dt.timedelta(hours=53, minutes=1)


def test_late_mail_restarts_the_quiet_period_and_is_the_last_arrival() -> None:
    record = released()
    night(record, 5, 3)
    night(record, 29, 1)  # the last late mail: seen by the pass ending at 29 h 1 min
    last = RELEASE + dt.timedelta(hours=29, minutes=1)
    assert (record.last_arrival_at, record.quiet_since, record.arrivals) == (last, last, 4)
    assert not night(record, 53, 0).finished  # 24 h quiet only
    assert not night(record, 77, 0).finished  # 47 h 59 min
    assert night(record, 101, 0).reason == quiet.QUIET
    assert record.last_arrival_at == last  # done keeps the last arrival


def test_a_pass_with_new_mail_never_finishes_quietly_even_after_a_long_silence() -> None:
    record = released()
    assert not night(record, 100, 2).finished  # quiet for 100 h, but this pass found mail
    assert record.quiet_since == RELEASE + dt.timedelta(hours=100, minutes=1)


def test_the_maximum_ends_a_busy_account_with_a_warning_naming_it() -> None:
    record = released("busy@example.com")
    for hours in range(5, 7 * 24, 24):
        assert not night(record, hours, 2).finished
    outcome = night(record, 7 * 24 + 5, 2)
    assert outcome.finished and outcome.reason == quiet.MAXIMUM
    assert outcome.warning.startswith("busy@example.com: still receiving mail on the old server")
    assert "7 d after the MX change (16 new messages since" in outcome.warning
    assert record.done_reason == "maximum" and record.warning == outcome.warning


def test_a_failed_or_unverified_pass_never_finishes_the_account() -> None:
    record = released()
    assert not night(record, 60, 0, ok=False).finished  # quiet long enough, but not verified
    assert not night(record, 8 * 24, 0, ok=False).finished  # past the maximum, not verified
    assert record.last_delta_ok is False and not record.done
    assert night(record, 8 * 24 + 1, 0).finished  # the next verified pass does


def test_done_is_final() -> None:
    record = released()
    night(record, 50, 0)
    done_at = record.done_at
    assert night(record, 80, 5) == quiet.Outcome(False)
    assert (record.done_at, record.arrivals, record.deltas) == (done_at, 0, 1)


def test_passes_before_the_release_are_noted_never_decided() -> None:
    record = DeltaRecord("a@example.com", initial_done_at=RELEASE - dt.timedelta(days=20))
    before = RELEASE - dt.timedelta(days=10)
    outcome = after_pass(record, started=before, ended=before, copied=40, ok=True,
                         quiet_period=1, max_after_mx=1)  # fmt: skip
    assert not outcome.finished
    assert record.last_delta_at == before and record.arrivals == 0 and record.deltas == 0


def test_the_main_dags_delta_is_noted_without_a_decision() -> None:
    record = DeltaRecord("a@example.com", released_at=RELEASE)
    started = RELEASE + dt.timedelta(days=30)
    outcome = after_pass(record, started=started, ended=started, copied=0, ok=True, decide=False)
    assert not outcome.finished and record.deltas == 1


def test_which_accounts_a_scheduled_run_takes() -> None:
    fresh = DeltaRecord("a")
    copied = DeltaRecord("b", initial_done_at=RELEASE)
    waiting = DeltaRecord("c", initial_done_at=RELEASE, released_at=RELEASE)
    handed = DeltaRecord("d", released_at=RELEASE, handed_over_at=RELEASE)
    finished = DeltaRecord("e", released_at=RELEASE, handed_over_at=RELEASE, done_at=RELEASE)
    assert [due(r, before_mx=False) for r in (fresh, copied, waiting, handed, finished)] == [
        None, None, None, "after_mx", None]  # fmt: skip
    assert [due(r, before_mx=True) for r in (fresh, copied, waiting, handed, finished)] == [
        None, "before_mx", None, "after_mx", None]  # fmt: skip


# -- the record on disk ---------------------------------------------------------------------
def test_record_round_trips_and_an_unwritten_one_is_empty(tmp_path: Path) -> None:
    assert quiet.load(tmp_path, "p", "a/b@example.com") == DeltaRecord("a/b@example.com")
    record = released("a/b@example.com")
    night(record, 5, 2)
    quiet.update(tmp_path, "p", "a/b@example.com", lambda r: r.__dict__.update(record.__dict__))
    path = quiet.record_path(tmp_path, "p", "a/b@example.com")
    assert path.parent == tmp_path / "p" / "deltas" and path.name.startswith("a_b@example.com.")
    assert quiet.load(tmp_path, "p", "a/b@example.com") == record
    assert quiet.record_path(tmp_path, "p", "a_b@example.com") != path
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".tmp")] == []


def test_a_damaged_record_is_an_error_naming_account_and_file(tmp_path: Path) -> None:
    path = quiet.record_path(tmp_path, "p", "a@example.com")
    path.parent.mkdir(parents=True)
    path.write_text("{half")
    with pytest.raises(quiet.RecordError, match=r"^a@example.com: the delta record .* cannot"):
        quiet.load(tmp_path, "p", "a@example.com")


def _count_up(state_dir: str, times: int) -> None:
    def add(record: DeltaRecord) -> None:
        record.arrivals += 1

    for _ in range(times):
        quiet.update(Path(state_dir), "p", "a@example.com", add)


def test_concurrent_updates_from_several_processes_lose_nothing(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_count_up, args=(str(tmp_path), 40)) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    assert [w.exitcode for w in workers] == [0, 0, 0]
    assert quiet.load(tmp_path, "p", "a@example.com").arrivals == 120


def test_a_second_pass_over_the_same_account_is_refused_while_one_runs(tmp_path: Path) -> None:
    with quiet.exclusive_pass(tmp_path, "p", "a@example.com", wait=False):
        busy = pytest.raises(quiet.AccountBusy, match="^a@example.com: another copy pass")
        with busy, quiet.exclusive_pass(tmp_path, "p", "a@example.com", wait=False):
            pass
        with quiet.exclusive_pass(tmp_path, "p", "b@example.com", wait=False):
            pass  # another account is independent
    with quiet.exclusive_pass(tmp_path, "p", "a@example.com", wait=False):
        pass  # released


def test_a_waiting_pass_starts_when_the_running_one_ends(tmp_path: Path) -> None:
    order: list[str] = []
    holding = threading.Event()

    def waiter() -> None:
        holding.wait()
        with quiet.exclusive_pass(tmp_path, "p", "a@example.com", wait=True):
            order.append("second")

    thread = threading.Thread(target=waiter)
    thread.start()
    with quiet.exclusive_pass(tmp_path, "p", "a@example.com", wait=True):
        holding.set()
        thread.join(0.2)  # gives the waiter time to block; asserts no timing
        order.append("first")
    thread.join(10)
    assert order == ["first", "second"]


def test_migration_finished_is_due_once_when_every_account_is_done(tmp_path: Path) -> None:
    accounts = ["a@example.com", "b@example.com"]
    assert not quiet.migration_notice_due(tmp_path, "p", accounts)
    for account in accounts:
        quiet.update(tmp_path, "p", account, lambda r: setattr(r, "done_at", RELEASE))
        due_now = quiet.migration_notice_due(tmp_path, "p", accounts)
    assert due_now
    quiet.note_migration_notice(tmp_path, "p", RELEASE)
    assert not quiet.migration_notice_due(tmp_path, "p", accounts)


def test_the_finished_events_say_why_and_name_the_accounts_stopped_at_the_maximum() -> None:
    calm, busy = released("calm@example.com"), released("busy@example.com")
    night(calm, 50, 0)
    for hours in (5, 29, 7 * 24 + 5):
        night(busy, hours, 1)
    facts = quiet.account_finished_facts("acme", calm)
    assert facts["subject"] == "acme: calm@example.com finished (quiet)"
    assert "no new mail on the old server for the quiet period" in facts["message"]
    assert facts["quiet_since"] == RELEASE.isoformat() and facts["done_reason"] == "quiet"
    facts = quiet.account_finished_facts("acme", busy)
    assert "3 in 3 deltas" in facts["message"] and "Warning: busy@" in facts["message"]
    facts = quiet.migration_finished_facts("acme", [calm, busy])
    assert facts["subject"] == "acme: migration finished, all 2 accounts done"
    assert facts["stopped_at_maximum"] == ["busy@example.com"]
    assert facts["last_arrival_at"] == busy.last_arrival_at.isoformat()


# -- when scheduled runs happen --------------------------------------------------------------
def test_runs_open_each_workday_evening_across_midnight_and_skip_the_weekend() -> None:
    friday_night = berlin(2025, 1, 10, 23, 30)  # inside Friday's 19:00-06:00 window
    assert next_opening(friday_night, EVENING) == berlin(2025, 1, 13, 19)  # Monday
    assert next_run(berlin(2025, 1, 13, 19), EVENING) == berlin(2025, 1, 14, 19)
    assert next_run(berlin(2025, 1, 14, 3), EVENING) == berlin(2025, 1, 14, 19)
    assert first_run(friday_night, EVENING) == friday_night  # started inside tonight's window
    assert first_run(berlin(2025, 1, 11, 3), EVENING) == berlin(2025, 1, 11, 3)  # Fri's, Sat 3am
    assert first_run(berlin(2025, 1, 11, 7), EVENING) == berlin(2025, 1, 13, 19)


def test_repeat_runs_stay_inside_the_window() -> None:
    start = berlin(2025, 1, 14, 19)
    assert next_run(start, EVENING, repeat=4 * HOUR) == berlin(2025, 1, 14, 23)
    assert next_run(berlin(2025, 1, 15, 3), EVENING, repeat=4 * HOUR) == berlin(2025, 1, 15, 19)
    any_window = DeltaWindow("UTC", None, EVERY_DAY)
    assert next_run(utc(2025, 1, 1, 12), any_window, repeat=5) == utc(2025, 1, 1, 12, 0, 5)
    assert next_run(utc(2025, 1, 1, 23, 59, 58), any_window, repeat=5) == utc(2025, 1, 2)


def test_dst_spring_forward_opens_at_the_transition_and_a_squeezed_window_not_at_all() -> None:
    sunday_early = DeltaWindow(BERLIN, (time(2, 30), time(5)), (6,))
    # 2025-03-30: 02:00 CET -> 03:00 CEST; 02:30 does not exist and means 03:00 CEST = 01:00 UTC
    opening = next_opening(berlin(2025, 3, 29, 12), sunday_early)
    assert opening.in_timezone("UTC") == utc(2025, 3, 30, 1)
    squeezed = DeltaWindow(BERLIN, (time(2), time(2, 30)), (6,))
    assert next_opening(berlin(2025, 3, 29, 12), squeezed) == berlin(2025, 4, 6, 2)


def test_dst_fall_back_opens_at_the_earlier_instant_and_runs_once() -> None:
    sunday_early = DeltaWindow(BERLIN, (time(2, 30), time(5)), (6,))
    # 2025-10-26: 03:00 CEST -> 02:00 CET; 02:30 happens twice, the first is 00:30 UTC
    opening = next_opening(berlin(2025, 10, 25, 12), sunday_early)
    assert opening.in_timezone("UTC") == utc(2025, 10, 26, 0, 30)
    # the second 02:30 (01:30 UTC) is inside the same window: no second run that night
    assert next_run(utc(2025, 10, 26, 0, 30), sunday_early).in_timezone("UTC") == utc(
        2025, 11, 2, 1, 30)  # fmt: skip


def test_evening_runs_keep_their_wall_clock_time_across_dst() -> None:
    daily = DeltaWindow(BERLIN, (time(19), time(6)), EVERY_DAY)
    saturday = next_run(berlin(2025, 3, 29, 19), daily)  # 18:00 UTC before, 17:00 UTC after
    assert saturday == berlin(2025, 3, 30, 19) and saturday.in_timezone("UTC").hour == 17


@settings(max_examples=300, deadline=None)
@given(
    moment=st.datetimes(min_value=dt.datetime(2024, 1, 1), max_value=dt.datetime(2027, 1, 1)),
    start=st.times(), end=st.times(),
    days=st.sets(st.integers(0, 6), min_size=1),
    repeat=st.sampled_from([None, 60.0, 3 * HOUR]),
)  # fmt: skip
def test_every_run_is_later_and_inside_an_allowed_window(moment, start, end, days, repeat) -> None:
    w = DeltaWindow(BERLIN, (start.replace(microsecond=0), end.replace(microsecond=0)), tuple(days))
    after = moment.replace(tzinfo=dt.UTC)
    try:
        run = next_run(after, w, repeat)
    except ValueError as exc:  # a single weekday whose window DST squeezes away, and no other
        assert "no window opens" in str(exc)
        return
    assert run > after and in_window(run, w)
