"""Scheduled after-hours deltas through the real DAGs with ``dag.test()``: real Dovecot servers,
real DNS (dnsmasq), the clock of the delta records injected (hours and days pass between runs
without sleeping).

Three accounts go through the main DAG (MX already changed, window "any"), then through nightly
runs of ``migration_<name>_deltas``: mail that arrives on the old server after the MX release is
copied by the next scheduled run, byte for byte; an account without new mail finishes once the
quiet period has passed; a busy one is ended by the maximum, with a warning; the plan's notifier
gets ``account_finished`` for each and ``migration_finished`` once; the Migrations page shows each
account's last delta, last new mail, quiet since and done.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from harness.corpus import make_message, seed_folder, snapshot

from mailmigrate import quiet

REPO_ROOT = Path(__file__).resolve().parents[2]

NEW_MX = "mx.new.example"


class Clock:
    """The records' clock: starts now (the MX sensor's release is real time), then jumps."""

    def __init__(self) -> None:
        self.start = self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def dag_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("MAILMIGRATE_PLANS_DIR", raising=False)
    folder = tmp_path / "dags"
    (folder / "plans").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "dags" / "migrations.py", folder / "migrations.py")
    return folder


def _plan(name: str, dns, events: Path) -> str:
    return (
        f"name: {name}\n"
        "source: {connection: deltas_old}\n"
        "destination: {connection: deltas_new}\n"
        f"accounts: {name}_accounts.csv\n"
        "state_dir: state\n"
        "retries: 0\n"
        "mx:\n"
        f"  expect: [{NEW_MX}]\n"
        f"  resolvers: [{json.dumps(dns.address)}]\n"
        f"  authoritative: [{json.dumps(dns.address)}]\n"
        "  poke_interval: 1s\n"
        "  timeout: 5m\n"
        "delta: {timezone: Europe/Berlin, window: any, quiet_period: 48h, max_after_mx: 7d}\n"
        "reports: {enabled: false}\n"
        "notify:\n"
        "  - notifier: harness.notifiers.LineFile\n"
        "    on: [account_finished, migration_finished]\n"
        f"    args: {{path: {json.dumps(str(events))}, line: '{{{{ event.kind }}}}: {{{{ event.subject }}}}'}}\n"
    )


def _deliver(server, user: str, password: str, seed: int, count: int) -> None:
    client = server.client(user, password)
    now = datetime.now(UTC).replace(microsecond=0)
    seed_folder(
        client, "INBOX", [(make_message(seed + i, size=2500), (), now) for i in range(count)]
    )
    client.logout()


def test_scheduled_deltas_copy_late_mail_until_each_mailbox_is_quiet(
    dag_folder, legacy_imap, modern_imap, new_account, dns_servers, monkeypatch, airflow_db
):
    from airflow.utils.session import create_session
    from harness.airflow_env import run_dag_test
    from harness.ops_helpers import client

    from mailmigrate_airflow.factory import build_dags

    clock = Clock()
    monkeypatch.setattr(quiet, "utcnow", clock)
    accounts = {}
    for n, role in enumerate(("late", "calm", "busy")):
        user, password = new_account(legacy_imap)
        dst_user, dst_password = new_account(modern_imap)
        _deliver(legacy_imap, user, password, 300_000 + n * 1000, 10)
        accounts[role] = (user, password, dst_user, dst_password)
    (dns,) = dns_servers(1)
    dns.set_mx("example.com", [NEW_MX], ttl=1)  # the MX change is done before the run
    name = "deltas_" + accounts["late"][0].split("@")[0]
    plans, events = dag_folder / "plans", dag_folder / "events.txt"
    (plans / f"{name}_accounts.csv").write_text(
        "source_user,source_password,destination_user,destination_password\n"
        + "".join(",".join(a) + "\n" for a in accounts.values())
    )
    (plans / f"{name}.yaml").write_text(_plan(name, dns, events))
    monkeypatch.setenv("AIRFLOW_CONN_DELTAS_OLD", json.dumps(legacy_imap.connection("deltas_old")))
    monkeypatch.setenv("AIRFLOW_CONN_DELTAS_NEW", json.dumps(modern_imap.connection("deltas_new")))
    dags = build_dags(str(dag_folder / "migrations.py"))
    main, nightly = dags[f"migration_{name}"], dags[f"migration_{name}_deltas"]
    state = plans / "state"

    def record(role: str) -> quiet.DeltaRecord:
        return quiet.load(state, name, accounts[role][0])

    def night(hours: float) -> dict[str, str]:
        """One scheduled run, ``hours`` after the release: the state of each account's delta."""
        clock.now = clock.start + dt.timedelta(hours=hours)
        run = run_dag_test(nightly, logical_date=clock.now)
        with create_session() as session:
            tis = run.get_task_instances(session=session)
        assert run.state == "success", {(t.task_id, t.map_index): t.state for t in tis}
        return {t.rendered_map_index: str(t.state) for t in tis if t.task_id == "delta"}

    def copied(role: str) -> bool:
        user, password, dst_user, dst_password = accounts[role]
        src, dst = legacy_imap.client(user, password), modern_imap.client(dst_user, dst_password)
        try:
            return snapshot(dst, "INBOX") == snapshot(src, "INBOX")
        finally:
            src.logout()
            dst.logout()

    assert run_dag_test(main).state == "success"

    for role in accounts:
        assert record(role).released_at == clock.start == record(role).handed_over_at
    assert copied("late") and copied("busy")

    _deliver(legacy_imap, *accounts["late"][:2], 400_000, 3)  # late mail after the MX release
    _deliver(legacy_imap, *accounts["busy"][:2], 410_000, 2)
    assert not copied("late")
    users = {role: a[0] for role, a in accounts.items()}
    assert night(5) == {users[r]: "success" for r in accounts}
    assert copied("late") and copied("busy")  # byte for byte, flags and dates
    assert record("late").arrivals == 3 and record("calm").arrivals == 0

    _deliver(legacy_imap, *accounts["late"][:2], 420_000, 1)  # the last late message
    _deliver(legacy_imap, *accounts["busy"][:2], 430_000, 1)
    night(29)
    assert copied("late") and record("late").last_arrival_at == clock.start + dt.timedelta(hours=29)

    for hours, finished in ((53, {"calm"}), (77, {"calm", "late"})):
        _deliver(legacy_imap, *accounts["busy"][:2], 440_000 + hours, 1)
        night(hours)
        assert {role for role in accounts if record(role).done} == finished
    assert record("calm").done_reason == "quiet" and record("calm").last_arrival_at is None
    assert record("late").done_reason == "quiet"
    assert not events.read_text().count("migration_finished")

    _deliver(legacy_imap, *accounts["busy"][:2], 450_000, 1)
    assert night(7 * 24 + 5) == {users["busy"]: "success"}  # the done accounts are not due
    busy = record("busy")
    assert busy.done_reason == "maximum" and copied("busy")
    assert busy.warning.startswith(f"{users['busy']}: still receiving mail on the old server 7 d")
    assert night(8 * 24) == {None: "skipped"}  # nothing due: no delta, no second notice
    assert events.read_text().splitlines() == [
        f"account_finished: {name}: {users['calm']} finished (quiet)",
        f"account_finished: {name}: {users['late']} finished (quiet)",
        f"account_finished: {name}: {users['busy']} finished (maximum)",
        f"migration_finished: {name}: migration finished, all 3 accounts done",
    ]

    # The Migrations page shows each account's deltas after the MX change (the page's JSON).
    status = client().get(f"/mailmigrate/api/migrations/{main.dag_id}").json()
    assert status["deltas"] == nightly.dag_id
    shown = {row["account"]: row["deltas"] for row in status["accounts"]}
    late = record("late")
    assert shown[users["late"]] == {
        "last_delta": late.last_delta_at.isoformat(), "last_delta_ok": True,
        "last_arrival": late.last_arrival_at.isoformat(), "arrivals": 4,
        "quiet_since": late.last_arrival_at.isoformat(), "done": late.done_at.isoformat(),
        "reason": "quiet", "warning": None,
    }  # fmt: skip
    assert shown[users["calm"]]["last_arrival"] is None and shown[users["calm"]]["done"]
    assert shown[users["busy"]]["reason"] == "maximum" and shown[users["busy"]]["warning"]
    page = client().get(f"/mailmigrate/migrations/{main.dag_id}").text
    assert page.count("✓ done (quiet)") == 2 and "✓ done (maximum)" in page
