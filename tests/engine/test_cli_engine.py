"""The `mailmigrate` command end to end over real Dovecot servers: test, copy, report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from harness.engine_helpers import assert_same_folders, rich_corpus, seed_account
from harness.rendezvous import AppendRendezvous

MAILMIGRATE = Path(sys.executable).with_name("mailmigrate")


def _write_plan(tmp_path: Path, rows: list[tuple[str, str, str, str]], extra: str = "") -> Path:
    (tmp_path / "accounts.csv").write_text(
        "source_user,source_password,destination_user,destination_password\n"
        + "".join(",".join(r) + "\n" for r in rows)
    )
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "name: clitest\n"
        "source: {connection: cli_src}\n"
        "destination: {connection: cli_dst}\n"
        "accounts: accounts.csv\n"
        f"state_dir: {tmp_path / 'state'}\n" + extra
    )
    return plan


def _run(plan: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(MAILMIGRATE), *args[:1], str(plan), *args[1:]],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip


def test_test_copy_and_report_commands(legacy_imap, modern_imap, new_account, tmp_path):
    users = []
    for seed in (1, 2):
        user, password = new_account(legacy_imap)
        seed_account(
            legacy_imap.client(user, password),
            {"INBOX": rich_corpus(seed)[:12], "INBOX.Sent": rich_corpus(seed + 5)[:4]},
        )
        dst_user, dst_password = new_account(modern_imap)
        users.append((user, password, dst_user, dst_password))
    # The second account has no passwords: the connections' master user logs in for it.
    plan = _write_plan(tmp_path, [users[0], (users[1][0], "", users[1][2], "")])
    env = dict(os.environ)
    env["AIRFLOW_CONN_CLI_SRC"] = json.dumps(legacy_imap.connection("cli_src"))
    env["AIRFLOW_CONN_CLI_DST"] = json.dumps(modern_imap.connection("cli_dst"))

    test = _run(plan, env, "test", "--json")
    assert test.returncode == 0, test.stderr
    summary = json.loads(test.stdout)
    assert [a["ok"] for a in summary["accounts"]] == [True, True]
    assert "ready to migrate" in test.stderr

    only_first = _run(plan, env, "copy", "--phase", "initial", "--account", users[0][0], "--json")
    assert only_first.returncode == 0, only_first.stderr
    copied = json.loads(only_first.stdout)["accounts"]
    assert [a["source_user"] for a in copied] == [users[0][0]]
    assert copied[0]["totals"]["copied"] == 16

    report = _run(plan, env, "report", "--json")
    assert report.returncode == 1  # the second account was not copied yet
    by_user = {a["source_user"]: a for a in json.loads(report.stdout)["accounts"]}
    assert by_user[users[0][0]]["missing"] == 0 and by_user[users[1][0]]["missing"] == 16

    everything = _run(plan, env, "copy", "--phase", "initial")
    assert everything.returncode == 0, everything.stderr
    delta = _run(plan, env, "copy", "--phase", "delta", "--json")
    assert delta.returncode == 0
    assert all(a["totals"]["copied"] == 0 for a in json.loads(delta.stdout)["accounts"])
    for user, password, dst_user, dst_password in users:
        assert_same_folders(
            legacy_imap.client(user, password),
            modern_imap.client(dst_user, dst_password),
            {"INBOX": "INBOX", "INBOX.Sent": "Sent"},
        )
    for output in (test, only_first, report, everything, delta):
        for secret in (users[0][1], users[0][3], legacy_imap.master_password):
            assert secret not in output.stdout + output.stderr


def test_a_refused_login_fails_the_account_with_a_clear_message(
    legacy_imap, modern_imap, new_account, tmp_path
):
    user, _ = new_account(legacy_imap)
    dst_user, dst_password = new_account(modern_imap)
    plan = _write_plan(tmp_path, [(user, "wrong-secret-123", dst_user, dst_password)])
    env = dict(os.environ)
    env["AIRFLOW_CONN_CLI_SRC"] = json.dumps(legacy_imap.connection("cli_src"))
    env["AIRFLOW_CONN_CLI_DST"] = json.dumps(modern_imap.connection("cli_dst"))
    for command in (("test",), ("copy", "--phase", "initial")):
        result = _run(plan, env, *command)
        assert result.returncode == 1
        assert f"source {user}" in result.stderr and "refused" in result.stderr
        assert "wrong-secret-123" not in result.stderr + result.stdout
        assert "Traceback" not in result.stderr


@pytest.mark.parametrize("parallel", [1, 3])
def test_accounts_run_as_many_at_a_time_as_the_plan_says(
    legacy_imap, modern_imap, new_account, tmp_path, parallel
):
    rows = []
    for seed in (11, 12, 13):
        user, password = new_account(legacy_imap)
        seed_account(legacy_imap.client(user, password), {"INBOX": rich_corpus(seed)[:6]})
        rows.append((user, password, *new_account(modern_imap)))
    plan = _write_plan(tmp_path, rows, f"parallel_accounts: {parallel}\n")
    # Every account's first APPEND waits (a few seconds at most) until all three are appending:
    # they all meet only when the three copies run at the same time.
    meeting = AppendRendezvous(modern_imap.host, modern_imap.port, parties=3, timeout=3)
    env = dict(os.environ)
    env["AIRFLOW_CONN_CLI_SRC"] = json.dumps(legacy_imap.connection("cli_src"))
    env["AIRFLOW_CONN_CLI_DST"] = json.dumps(
        {**modern_imap.connection("cli_dst"), "port": meeting.port}
    )
    try:
        result = _run(plan, env, "copy", "--phase", "initial", "--json")
    finally:
        meeting.close()
    assert result.returncode == 0, result.stderr
    entries = json.loads(result.stdout)["accounts"]
    assert [e["source_user"] for e in entries] == [row[0] for row in rows]  # the plan's order
    assert [e["totals"]["copied"] for e in entries] == [6, 6, 6]
    assert meeting.met == (parallel == 3), meeting.arrivals
    for user, password, dst_user, dst_password in rows:
        assert_same_folders(
            legacy_imap.client(user, password),
            modern_imap.client(dst_user, dst_password),
            {"INBOX": "INBOX"},
        )
