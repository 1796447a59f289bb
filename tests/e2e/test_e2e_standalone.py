"""A migration on the real Airflow components (``airflow standalone``), driven through the REST API.

Airflow runs as its own processes in a temporary home on PostgreSQL, with real authentication (JWT
from ``POST /auth/token``). Through the REST API the tests create the plan's connections, unpause
the DAG, run a test migration of one account (trigger parameters ``accounts`` and ``stop``) and a
full migration, during which every ``wait_for_mx`` sensor must sit deferred in the triggerer
until the MX record on the DNS server flips. Then: every task succeeded, the destination holds
the source's mail exactly, the task logs are readable through the API, and no password leaks.
"""

from __future__ import annotations

import re

import httpx
import pytest
from harness.airflow_stack import AirflowApi, StackError
from harness.e2e_migration import NEW_MAIL, NEW_MX, SOURCE_FOLDERS, xcom

pytest_plugins = ["harness.stack_fixtures"]
pytestmark = pytest.mark.slow
TRIGGER_CLASS = "mailmigrate_airflow.triggers.MxPropagationTrigger"
STEPS = ("test", "initial_copy", "wait_for_mx", "wait_for_delta_window", "delta_copy")


def test_the_dag_arrives_paused_and_the_api_needs_a_login(standalone_migration):
    stack, scenario = standalone_migration.stack, standalone_migration.scenario
    assert standalone_migration.dag_before_unpause["is_paused"] is True
    assert stack.api().get(f"/dags/{scenario.dag_id}")["is_paused"] is False
    assert httpx.get(f"{stack.base_url}/api/v2/dags/{scenario.dag_id}").status_code == 401
    with pytest.raises(StackError, match="login of admin failed: 401"):
        AirflowApi(stack.base_url, "admin", "not-the-password")
    viewer = stack.api("viewer")
    assert viewer.get(f"/dags/{scenario.dag_id}")["dag_id"] == scenario.dag_id
    viewer.request("POST", f"/dags/{scenario.dag_id}/dagRuns", json={"logical_date": None},
                   expect=403)  # fmt: skip
    connection = stack.api().get(f"/connections/{scenario.source_conn_id}")
    assert connection["conn_type"] == "imap" and connection["host"] == scenario.source.host
    assert scenario.source.master_password not in str(connection)


def test_a_test_migration_of_one_account_stops_after_the_test(standalone_migration):
    stack, scenario = standalone_migration.stack, standalone_migration.scenario
    chosen, other = scenario.accounts[0], scenario.accounts[1]
    copied_before = scenario.destination_count(chosen)
    run_id = scenario.trigger(stack, {"accounts": [chosen.source_user], "stop": "test"})
    record = scenario.finish(stack, run_id, timeout=420)

    states = {task: ti["state"] for task, ti in record.task_instances.items()}
    assert record.run["state"] == "success", states
    assert states[f"{chosen.group_id}.test"] == "success"
    for step in STEPS[1:]:  # skipped for the whole run before they were mapped: never started
        assert states[f"account.{step}"] == "skipped", states
        assert record.task_instances[f"account.{step}"]["try_number"] == 0, states
    for step in STEPS:  # the other account is not in this run: not one task instance of it
        assert f"{other.group_id}.{step}" not in states, states
    assert states["cutover_ready"] == "skipped"
    # The grid shows each instance as its mailbox.
    assert (
        record.task_instances[f"{chosen.group_id}.test"]["rendered_map_index"] == chosen.source_user
    )
    assert len(states) == 1 + 5 + 1, states  # accounts, its test, four skipped steps, cutover
    assert scenario.destination_count(chosen) == copied_before  # a test copies nothing
    log = stack.api().task_log(scenario.dag_id, run_id, f"{chosen.group_id}.test")
    assert "ready to migrate" in log and "Projects/2024" in log, log[-3000:]


def test_a_full_migration_runs_through_the_triggerer_to_the_delta(
    standalone_migration, standalone_run
):
    stack, scenario = standalone_migration.stack, standalone_migration.scenario
    record = standalone_run
    states = {task: ti["state"] for task, ti in record.task_instances.items()}
    assert record.run["state"] == "success", states
    assert set(states.values()) == {"success"}, states
    assert len(states) == 1 + 5 * len(scenario.accounts) + 1

    # While the MX still named the old provider, each sensor was a trigger in the triggerer.
    for ti in record.deferred.values():
        assert ti["trigger"]["classpath"] == TRIGGER_CLASS, ti
        assert ti["triggerer_job"]["job_type"] == "TriggererJob", ti
        assert ti["triggerer_job"]["state"] == "running", ti

    scenario.assert_copied(stack, record.run_id)


def test_task_logs_are_readable_through_the_api_and_hold_no_secret(
    standalone_migration, standalone_run
):
    stack, scenario = standalone_migration.stack, standalone_migration.scenario
    api = stack.api("viewer")  # reading logs needs no more than the viewer role
    account = scenario.accounts[0]
    logs = {
        step: api.task_log(scenario.dag_id, standalone_run.run_id, f"{account.group_id}.{step}")
        for step in STEPS
    }
    logs["cutover_ready"] = api.task_log(scenario.dag_id, standalone_run.run_id, "cutover_ready")
    total = sum(SOURCE_FOLDERS.values())
    assert f"initial pass: {total} copied" in logs["initial_copy"], logs["initial_copy"][-3000:]
    assert f"{NEW_MAIL} copied" in logs["delta_copy"], logs["delta_copy"][-3000:]
    # The copy log's first word on the copy is one short line; the owner report is a link.
    headline = f"{account.source_user}: initial copy done: {total} copied, 0 failed"
    initial = logs["initial_copy"]
    assert headline in initial and initial.index(headline) < initial.index("initial pass:")
    report = f"{stack.base_url}/mailmigrate/reports/{scenario.dag_id}/"
    assert f"Owner report: {report}" in initial and "file://" not in initial, initial[-3000:]
    # No masking warning for connection settings, real quota words in the test step.
    assert not any("too short" in log for log in logs.values())
    assert "quota ?" not in logs["test"] and "unlimited" not in logs["test"]
    # The trigger's own checks, logged in the triggerer, are part of the sensor's log.
    sensor_log = logs["wait_for_mx"]
    assert "attempt=1.log.trigger." in sensor_log, sensor_log[-3000:]  # the triggerer's file
    assert "Pausing task as DEFERRED" in sensor_log and "Trigger fired event" in sensor_log
    domain = re.escape(scenario.domain)
    assert re.search(rf"MX of {domain}, check \d+, expecting {re.escape(NEW_MX)}", sensor_log)
    assert re.search(
        rf"MX of {domain} has propagated \(check \d+\): every server answers", sensor_log
    )
    assert f"MX records of {scenario.domain}" in logs["cutover_ready"], logs["cutover_ready"][
        -3000:
    ]
    everything = "\n".join(logs.values())
    for secret in scenario.secrets:
        assert secret not in everything
    for entry in ("initial_copy", "delta_copy"):
        value = str(
            xcom(stack, scenario.dag_id, standalone_run.run_id, f"{account.group_id}.{entry}")
        )
        assert not any(secret in value for secret in scenario.secrets)


def test_sync_state_lands_in_the_shared_state_dir(standalone_migration, standalone_run):
    files = [p for p in standalone_migration.state_dir.rglob("*") if p.is_file()]
    assert files, f"no sync state under {standalone_migration.state_dir}"


def test_clearing_delta_copy_runs_another_delta(standalone_migration, standalone_run):
    """The runbook's "another delta": clear the account's delta_copy task in the finished run."""
    stack, scenario = standalone_migration.stack, standalone_migration.scenario
    account, dag_id, run_id = scenario.accounts[-1], scenario.dag_id, standalone_run.run_id
    scenario.deliver_new_mail([account], count=2, seed=3_000_000)
    task_id = f"{account.group_id}.delta_copy"  # the account's instance of account.delta_copy
    map_index = stack.api().task_instances(dag_id, run_id)[task_id]["map_index"]
    cleared = stack.api().request(
        "POST",
        f"/dags/{dag_id}/clearTaskInstances",
        json={"dag_run_id": run_id, "task_ids": [["account.delta_copy", map_index]],
              "only_failed": False, "dry_run": False},
    )  # fmt: skip
    assert [(ti["task_id"], ti["map_index"]) for ti in cleared["task_instances"]] == [
        ("account.delta_copy", map_index)
    ]

    def delta_done_again() -> dict | None:
        ti = stack.api().task_instances(dag_id, run_id)[task_id]
        return ti if ti["try_number"] == 2 and ti["state"] in ("success", "failed") else None

    ti = stack.wait_for(delta_done_again, 180, f"the cleared {task_id} to run again")
    assert ti["state"] == "success", stack.api().task_log(dag_id, run_id, task_id, 2)[-3000:]
    assert xcom(stack, dag_id, run_id, task_id)["totals"]["copied"] == 2
    assert scenario.differences(account) == {}
