"""A copy is "ok" only when verified (issue 13): after the pass, every source message it selected
is on the destination by identity, or the account fails saying how many are missing where; a
pass whose check never ran is checked by the next one.

The destination here is a real Dovecot behind a proxy that files every APPEND to INBOX into Junk,
as a server-side rule or a broken front end would: every APPEND is answered OK, the messages
are simply not where they were put.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import pytest
from harness.airflow_env import REPO_ROOT
from harness.cli_migration import CliMigration, seed_source
from harness.corpus import make_message, seed_folder, snapshot
from harness.engine_helpers import endpoints, make_plan
from harness.proxy import CuttingProxy

from mailmigrate.errors import MailboxError
from mailmigrate.plan import Account
from mailmigrate.sync import copy_account

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
    from harness.airflow_env import run_dag_test, run_outcome

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

    dag, _deltas = build_dags(str(dags / "migrations.py")).values()
    run = run_dag_test(dag, run_conf={"stop": "initial_copy"})
    logs = "".join(capfd.readouterr())
    outcome = run_outcome(run)  # by <account group>.<step>
    states, xcoms = outcome["states"], outcome["xcoms"]

    group = alice[0].replace("@", "_").replace(".", "_")
    assert states[f"{group}.test"] == "success"
    assert states[f"{group}.initial_copy"] == "failed"
    assert states["cutover_ready"] == "upstream_failed"
    summary = xcoms[f"{group}.initial_copy"]
    assert summary["ok"] is False and summary["totals"]["missing"] == 12
    assert "12 messages missing on the destination in INBOX" in logs
    assert "change the MX record now" not in logs
    assert alice[1] not in json.dumps(xcoms) + logs


def test_a_pass_whose_check_never_ran_is_checked_by_the_next_one(
    legacy_imap, modern_imap, new_account, tmp_path
):
    """A delta copies new mail, then loses its connection while checking it. Before the next
    delta one of those messages vanishes from the destination: the next delta still checks the
    earlier pass's copies (its sync token never moved on), fails, and the one after refills."""
    user, password = seed_source(legacy_imap, new_account, 140)
    dst_user, dst_password = new_account(modern_imap)
    account = Account(user, dst_user, password, dst_password)
    plan = make_plan(tmp_path, [account], parallel_folders=1)
    source, destination = endpoints(legacy_imap, modern_imap)
    proxy = CuttingProxy(modern_imap.host, modern_imap.port)
    destination = replace(destination, port=proxy.port)
    try:
        assert copy_account(plan, account, source, destination, "initial").ok
        src = legacy_imap.client(user, password)
        when = snapshot(src, "INBOX").most_common(1)[0][0][2]
        seed_folder(src, "INBOX", [(make_message(140_500 + i), (), when) for i in range(3)])
        # Cut at the check's listing of what the delta appended: the first listing on the
        # destination (nothing was appended after the state's mark since the pass read the
        # folder's state, so the copy does not list it before appending).
        proxy.arm_on_reply(b"MESSAGE-ID", occurrence=1)
        with pytest.raises(MailboxError):
            copy_account(plan, account, source, destination, "delta", retry_delays=())
        proxy.disarm()
        dst = modern_imap.client(dst_user, dst_password)
        dst.select_folder("INBOX")
        lost = dst.search("ALL")[-1:]  # one of the three new ones
        dst.delete_messages(lost)
        dst.expunge(lost)  # UID EXPUNGE: copied messages marked \Deleted stay

        short = copy_account(plan, account, source, destination, "delta")
        assert not short.ok and short.totals()["missing"] == 1, short.summary_lines()
        again = copy_account(plan, account, source, destination, "delta")
        assert again.ok and again.totals()["copied"] == 1, again.summary_lines()
        assert snapshot(dst, "INBOX") == snapshot(src, "INBOX")
        src.logout()
        dst.logout()
    finally:
        proxy.close()
