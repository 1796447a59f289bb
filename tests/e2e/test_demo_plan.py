"""The demo's plan (``make demo``): valid, and slow enough to watch.

A newcomer should see a copy in progress and the status page's time-left estimate move: the
demo throttles each account's copy, so the largest mailbox takes over a minute, and two
accounts run at a time, so one finishes (the estimate appears) while others still copy.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

from mailmigrate.plan import load_plan

_spec = importlib.util.spec_from_file_location(
    "demo_run", Path(__file__).resolve().parents[2] / "demo" / "run.py"
)
demo = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(demo)


def test_the_demo_plan_is_valid_and_throttled(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "DEMO", tmp_path)
    monkeypatch.setenv("MAILMIGRATE_STATE_DIR", str(tmp_path / "state"))
    plan = load_plan(demo.write_plan(SimpleNamespace(address="127.0.0.1:5353")))
    assert [a.source_user for a in plan.accounts] == [a for a, _, _ in demo.ACCOUNTS]
    rate = plan.copy.messages_per_second
    largest = max(count for _, _, count in demo.ACCOUNTS)
    smallest = min(count for _, _, count in demo.ACCOUNTS)
    assert rate and largest / rate >= 60  # the longest copy runs for over a minute
    assert plan.parallel_accounts == 2 and smallest / rate < largest / rate / 2
    # calendars and address books move with the mail, each account logging in with its own
    assert plan.kinds == ("mail", "calendars", "contacts")
    assert (plan.groupware.source_connection, plan.groupware.destination_connection) == (
        "demo_dav_old", "demo_dav_new")  # fmt: skip
    assert all(a.source_password and a.destination_password for a in plan.accounts)
    # late mail (make demo-late-mail) is copied by the scheduled deltas within a minute, and a
    # mailbox turns done after three quiet minutes: the demo's compressed after-hours deltas
    assert (plan.delta.repeat, plan.delta.quiet_period, plan.delta.max_after_mx) == (60, 180, 1800)
