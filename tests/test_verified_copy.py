"""A copy is "ok" only when verified (issue 13): after the pass, every source message it selected
is on the destination by identity, or the account fails saying how many are missing where.

The destination here is a real Dovecot behind a proxy that files every APPEND to INBOX into Junk,
as a server-side rule or a broken front end would: every APPEND is answered OK, the messages
are simply not where they were put.
"""

from __future__ import annotations

import json
import shutil

import pytest
from cli_migration import CliMigration, seed_source
from harness.airflow_env import REPO_ROOT
from harness.corpus import snapshot
from harness.proxy import CuttingProxy

MISFILE = {b' APPEND "INBOX" ': b' APPEND "Junk" '}


@pytest.fixture
def misfiling(modern_imap):
    """A proxy in front of the modern server and its rewrite rules (clear them to stop)."""
    rules = dict(MISFILE)
    proxy = CuttingProxy(modern_imap.host, modern_imap.port, rewrite_requests=rules)
    yield proxy, rules
    proxy.close()


def test_mail_missing_after_the_pass_fails_the_account_until_it_is_there(
    legacy_imap, modern_imap, new_account, tmp_path, misfiling
):
    proxy, rules = misfiling
    alice = seed_source(legacy_imap, new_account, 137)
    mm1 = new_account(modern_imap)
    cli = CliMigration(tmp_path, legacy_imap, modern_imap, destination_port=proxy.port)
    cli.accounts((*alice, *mm1))

    done, entry = cli.copy()
    assert done.returncode == 1, done.stderr
    assert entry["ok"] is False and entry["totals"]["missing"] == 12
    assert {f["source"]: f["missing"] for f in entry["folders"]} == {
        "INBOX": 12, "Projects": 0, "Lists": 0,
    }  # fmt: skip
    assert "folder INBOX: FAILED: 12 messages missing on the destination (INBOX)" in done.stderr
    assert "copy: 0 of 1 accounts ok" in done.stderr

    # A retry does not trust the state that recorded the 12 as copied: still failed.
    done, entry = cli.copy("delta")
    assert done.returncode == 1 and entry["totals"]["missing"] == 12, done.stderr

    rules.clear()  # the destination files mail where it is put again
    done, entry = cli.copy("delta")
    assert done.returncode == 0, done.stderr
    assert entry["totals"]["copied"] == 12 and entry["totals"]["missing"] == 0
    src, dst = legacy_imap.client(*alice), modern_imap.client(*mm1)
    assert snapshot(dst, "INBOX") == snapshot(src, "INBOX")
    assert snapshot(dst, "Projects") == snapshot(src, "INBOX.Projects")
    src.logout()
    dst.logout()


def test_a_short_account_fails_its_initial_copy_and_blocks_cutover_ready(
    legacy_imap, modern_imap, new_account, tmp_path, monkeypatch, airflow_db, capfd, misfiling
):
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from harness.airflow_env import run_dag_test

    from mailmigrate_airflow.factory import build_dags

    proxy, _ = misfiling
    monkeypatch.delenv("MAILMIGRATE_PLANS_DIR", raising=False)
    dags = tmp_path / "dags"
    (dags / "plans").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "dags" / "migrations.py", dags / "migrations.py")
    alice = seed_source(legacy_imap, new_account, 138)
    mm1 = new_account(modern_imap)
    name = "short_" + alice[0].split("@")[0]  # a DAG id of its own in the shared test DB
    cli = CliMigration(dags / "plans", legacy_imap, modern_imap, name=name,
                       state_dir=dags / "plans" / "state", destination_port=proxy.port)  # fmt: skip
    cli.accounts((*alice, *mm1), extra="retries: 0\nreports: {enabled: false}\n")
    for var in ("AIRFLOW_CONN_CLI_SRC", "AIRFLOW_CONN_CLI_DST"):
        monkeypatch.setenv(var, cli.env[var])

    (dag,) = build_dags(str(dags / "migrations.py")).values()
    run = run_dag_test(dag, run_conf={"stop": "initial_copy"})
    logs = "".join(capfd.readouterr())
    with create_session() as session:
        states = {ti.task_id: ti.state for ti in run.get_task_instances(session=session)}
        query = XComModel.get_many(run_id=run.run_id, dag_ids=dag.dag_id, key="return_value")
        xcoms = {x.task_id: XComModel.deserialize_value(x) for x in session.scalars(query)}

    group = alice[0].replace("@", "_").replace(".", "_")
    assert states[f"{group}.test"] == "success"
    assert states[f"{group}.initial_copy"] == "failed"
    assert states["cutover_ready"] == "upstream_failed"
    summary = xcoms[f"{group}.initial_copy"]
    assert summary["ok"] is False and summary["totals"]["missing"] == 12
    assert "12 messages missing on the destination in INBOX" in logs
    assert "change the MX record now" not in logs
    assert alice[1] not in json.dumps(xcoms) + logs
