"""A plan with an `ews` connection runs through the DAG like an IMAP one (EWS simulator:
no Exchange server can run here)."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from ews_simulator import EwsSimulator, SimulatorStore
from exchangelib.protocol import close_connections
from harness.corpus import make_message, seed_folder, snapshot

REPO_ROOT = Path(__file__).resolve().parents[2]
ADMIN, ADMIN_PASSWORD = "admin@example.com", "Exchange-Admin-Pw-5521"


def test_imap_to_exchange_plan_runs_through_the_dag(
    tmp_path, legacy_imap, new_account, monkeypatch, airflow_db, capfd
):
    from harness.airflow_env import run_dag_test

    from mailmigrate_airflow.factory import build_dags

    store = SimulatorStore()
    store.add_user(ADMIN, ADMIN_PASSWORD, impersonation=True)
    user, password = new_account(legacy_imap)
    mailbox = user.replace("@", ".ews@")
    store.add_mailbox(mailbox)
    client = legacy_imap.client(user, password)
    when = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
    seed_folder(
        client,
        "INBOX",
        [(make_message(91_000 + i), ("\\Seen",) if i % 2 else (), when) for i in range(12)],
    )
    seed_folder(
        client, "INBOX.Sent", [(make_message(92_000 + i), ("\\Seen",), when) for i in range(3)]
    )

    folder = tmp_path / "dags"
    (folder / "plans").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "dags" / "migrations.py", folder / "migrations.py")
    name = "ews_" + user.split("@")[0]
    (folder / "plans" / f"{name}.yaml").write_text(
        f"name: {name}\nsource: {{connection: ews_old}}\ndestination: {{connection: ews_new}}\n"
        f"accounts:\n  - {{source_user: {user}, source_password: {password}, destination_user: {mailbox}}}\n"
        "state_dir: state\ndelta: {window: any}\n"
    )
    with EwsSimulator(store) as simulator:
        monkeypatch.setenv("AIRFLOW_CONN_EWS_OLD", json.dumps(legacy_imap.connection("ews_old")))
        monkeypatch.setenv(
            "AIRFLOW_CONN_EWS_NEW",
            json.dumps({"conn_type": "ews", "host": simulator.url, "login": ADMIN,
                        "password": ADMIN_PASSWORD, "extra": {"auth": "basic"}}),
        )  # fmt: skip
        dag, _deltas = build_dags(str(folder / "migrations.py")).values()
        run = run_dag_test(dag)
    close_connections()
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert set(states.values()) == {"success"}, states
    for imap_folder, exchange_folder in (("INBOX", ("Inbox",)), ("INBOX.Sent", ("Sent Items",))):
        expected = Counter(
            (sha, "\\Seen" in flags)
            for (sha, flags, _), n in snapshot(client, imap_folder).items()
            for _ in range(n)
        )
        actual = Counter(
            (hashlib.sha256(i.mime).hexdigest(), i.is_read)
            for i in store.messages(mailbox, exchange_folder)
        )
        assert actual == expected, imap_folder
    logs = "".join(capfd.readouterr())
    assert password not in logs and ADMIN_PASSWORD not in logs
