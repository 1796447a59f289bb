"""The scheduled after-hours deltas through the real scheduler (``airflow standalone``): after the
migration run of the shared scenario, mail that reaches the old server is copied by a scheduled
run of ``migration_<name>_deltas``, and both mailboxes turn done once quiet.

Time is compressed in the plan (window "any", a run every 2 s, quiet after 20 s); the DST and
midnight rules of the same timetable are tested with the scheduler's clock injected
(tests/airflow/test_timetable.py)."""

from __future__ import annotations

import pytest
from harness.e2e_migration import NEW_MAIL

from mailmigrate import quiet

pytest_plugins = ["harness.stack_fixtures"]
pytestmark = pytest.mark.slow
COMPRESSED = 'delta: {timezone: Europe/Berlin, window: "any", repeat: 2s, quiet_period: 20s}'


def test_the_scheduler_copies_late_mail_until_each_mailbox_is_quiet(
    standalone_migration, standalone_run
):
    stack, scenario = standalone_migration.stack, standalone_migration.scenario
    assert standalone_run.run["state"] == "success"
    plan = scenario.plans_dir / f"{scenario.name}.yaml"
    original = plan.read_text()
    plan.write_text(original.replace('delta: {timezone: Europe/Berlin, window: "any"}', COMPRESSED))
    try:
        _late_mail_is_copied_until_quiet(stack, scenario, standalone_migration.state_dir)
    finally:  # the tests after this one share the stack: no run every 2 s behind their backs
        plan.write_text(original)
        stack.api().request("PATCH", f"/dags/{scenario.dag_id}_deltas", json={"is_paused": True})


def _late_mail_is_copied_until_quiet(stack, scenario, state_dir) -> None:
    late, calm = scenario.accounts
    users = [late.source_user, calm.source_user]
    scenario.deliver_new_mail([late], count=3, seed=3_000_000)  # after the MX release

    def records() -> dict[str, quiet.DeltaRecord]:
        return quiet.load_all(state_dir, scenario.name, users)

    done = stack.wait_for(lambda: all(r.done for r in records().values()) and records(), 240,
                          "both mailboxes to go quiet")  # fmt: skip
    # the main DAG's delta copied NEW_MAIL after the release; the scheduled ones the late mail
    assert done[late.source_user].arrivals == NEW_MAIL + 3, done
    assert done[calm.source_user].arrivals == NEW_MAIL, done
    assert scenario.differences(late) == {}  # byte for byte, flags and dates
    assert done[late.source_user].done_reason == done[calm.source_user].done_reason == "quiet"
    assert done[late.source_user].last_arrival_at > done[calm.source_user].last_arrival_at

    deltas_id = f"{scenario.dag_id}_deltas"
    runs = stack.api().get(f"/dags/{deltas_id}/dagRuns", params={"limit": 100})["dag_runs"]
    assert runs and {run["run_type"] for run in runs} == {"scheduled"}
    copied = [
        run["dag_run_id"] for run in runs
        if any(ti["rendered_map_index"] == late.source_user and ti["state"] == "success"
               for ti in stack.api().get(
                   f"/dags/{deltas_id}/dagRuns/{run['dag_run_id']}/taskInstances")["task_instances"])
    ]  # fmt: skip
    assert copied, "no scheduled run shows a delta of the late account"
