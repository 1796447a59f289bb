"""A whole migration through the real DAG with ``dag.test()``: real Dovecot servers, real DNS.

The initial copy completes; the MX sensor waits while the MX still points to the old host; mail
arrives on the source; the MX flips on the DNS servers one by one and the sensor releases only
when all of them agree; the delta copies the new mail; source and destination end identical.
No password of the plan or the connections shows up in the serialized DAG, the logs or XCom.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from harness.corpus import make_message, seed_folder, snapshot

REPO_ROOT = Path(__file__).resolve().parents[2]
POKE = 1  # seconds between MX checks
OLD_MX, NEW_MX = "mx.old.example", "mx.new.example"


def _plan(name: str, dns) -> str:
    auth, *resolvers = dns
    return (
        f"name: {name}\n"
        "source: {connection: e2e_old}\n"
        "destination: {connection: e2e_new}\n"
        f"accounts: {name}_accounts.csv\n"
        "state_dir: state\n"
        "retries: 1\n"
        "mx:\n"
        f"  expect: [{NEW_MX}]\n"
        f"  resolvers: [{', '.join(json.dumps(s.address) for s in resolvers)}]\n"
        f"  authoritative: [{json.dumps(auth.address)}]\n"
        f"  poke_interval: {POKE}s\n"
        "  timeout: 10m\n"
        "delta: {timezone: Europe/Berlin, window: any}\n"
    )


class Operator(threading.Thread):
    """Plays the ops team and the outside world while the DAG runs: waits for the initial
    copies, lets mail arrive on the source, then flips the MX on one DNS server at a time and
    records, before each flip, whether the delta had already run (it must not have)."""

    def __init__(self, accounts, dns, legacy, modern):
        super().__init__(daemon=True)
        self.accounts, self.dns, self.legacy, self.modern = accounts, dns, legacy, modern
        self.delta_ran_early: list[bool] = []
        self.error: BaseException | None = None

    def _destination_count(self, account) -> int:
        client = self.modern.client(account[2], account[3])
        try:
            return client.select_folder("INBOX", readonly=True)[b"EXISTS"]
        finally:
            client.logout()

    def run(self) -> None:
        try:
            deadline = time.monotonic() + 300
            while any(self._destination_count(a) < 20 for a in self.accounts):
                assert time.monotonic() < deadline, "initial copies did not finish"
                time.sleep(0.5)
            now = datetime.now(UTC).replace(microsecond=0)
            for n, (user, password, _, _) in enumerate(self.accounts):
                client = self.legacy.client(user, password)
                seed_folder(
                    client,
                    "INBOX",
                    [(make_message(80_000 + n * 10 + i), (), now) for i in range(3)],
                )
                client.logout()
            for server in self.dns:
                time.sleep(3 * POKE)
                self.delta_ran_early.append(
                    any(self._destination_count(a) > 20 for a in self.accounts)
                )
                server.set_mx("example.com", [NEW_MX], ttl=1)
        except BaseException as exc:
            self.error = exc


@pytest.fixture
def dag_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("MAILMIGRATE_PLANS_DIR", raising=False)
    folder = tmp_path / "dags"
    (folder / "plans").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "dags" / "migrations.py", folder / "migrations.py")
    return folder


def test_a_plan_runs_the_whole_way_through_the_dag(
    dag_folder, legacy_imap, modern_imap, new_account, dns_servers, monkeypatch, airflow_db, capfd
):
    from airflow.serialization.serialized_objects import DagSerialization
    from harness.airflow_env import run_dag_test, run_outcome

    from mailmigrate_airflow.factory import build_dags

    accounts = []
    for n in range(2):
        user, password = new_account(legacy_imap)
        dst_user, dst_password = new_account(modern_imap)
        client = legacy_imap.client(user, password)
        seed_folder(client, "INBOX", [(make_message(70_000 + n * 100 + i, size=3000), ("\\Seen",) if i % 2 else (),
                                       datetime(2024, 2, 1, 8, i, tzinfo=UTC)) for i in range(20)])  # fmt: skip
        seed_folder(
            client,
            "INBOX.Sent",
            [
                (make_message(75_000 + n * 100 + i), ("\\Seen",), datetime(2024, 2, 2, tzinfo=UTC))
                for i in range(5)
            ],
        )
        client.logout()
        accounts.append((user, password, dst_user, dst_password))
    dns = dns_servers(3)  # one authoritative server, two resolvers
    for server in dns:
        server.set_mx("example.com", [OLD_MX], ttl=1)
    name = "e2e_" + accounts[0][0].split("@")[0]
    plans = dag_folder / "plans"
    (plans / f"{name}_accounts.csv").write_text(
        "source_user,source_password,destination_user,destination_password\n"
        + "".join(",".join(a) + "\n" for a in accounts)
    )
    (plans / f"{name}.yaml").write_text(_plan(name, dns))
    monkeypatch.setenv("AIRFLOW_CONN_E2E_OLD", json.dumps(legacy_imap.connection("e2e_old")))
    monkeypatch.setenv("AIRFLOW_CONN_E2E_NEW", json.dumps(modern_imap.connection("e2e_new")))

    dag, _deltas = build_dags(str(dag_folder / "migrations.py")).values()
    ops = Operator(accounts, dns, legacy_imap, modern_imap)
    ops.start()
    run = run_dag_test(dag)
    ops.join(timeout=60)
    assert ops.error is None, ops.error
    logs = "".join(capfd.readouterr())

    outcome = run_outcome(run)  # by <account group>.<step>
    states, xcoms = outcome["states"], outcome["xcoms"]
    assert set(states.values()) == {"success"}, states
    assert ops.delta_ran_early == [False, False, False]  # nothing before the last server agreed
    for user, password, dst_user, dst_password in accounts:
        group = user.replace("@", "_").replace(".", "_")
        assert xcoms[f"{group}.initial_copy"]["totals"]["copied"] == 25
        assert xcoms[f"{group}.delta_copy"]["totals"]["copied"] == 3
        src, dst = legacy_imap.client(user, password), modern_imap.client(dst_user, dst_password)
        for source_folder, destination_folder in (("INBOX", "INBOX"), ("INBOX.Sent", "Sent")):
            assert snapshot(dst, destination_folder) == snapshot(src, source_folder)
    # The sensor logged every server's answer on its checks.
    for server in dns:
        assert f"{server.address}: {OLD_MX}" in logs and f"{server.address}: {NEW_MX}" in logs

    secrets = [s for a in accounts for s in (a[1], a[3])] + [
        legacy_imap.master_password,
        modern_imap.master_password,
    ]
    serialized = json.dumps(DagSerialization.to_dict(dag), default=str)
    dumped = json.dumps(xcoms, default=str)
    for secret in secrets:
        assert secret not in serialized and secret not in dumped and secret not in logs
