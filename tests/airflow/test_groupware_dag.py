"""Groupware through the DAG: a plan with ``kinds: [mail, calendars, contacts]`` moves one
account's mail (Dovecot -> Dovecot) and its calendars and address book (Radicale -> Xandikos)
in the same test / initial_copy / delta_copy tasks, run with ``dag.test()``."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from harness import groupware_corpus as corpus
from harness.airflow_env import REPO_ROOT, run_dag_test
from harness.radicale import RadicaleServer
from harness.xandikos import XandikosServer

from mailmigrate.groupware.dav import DavAccount

pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")

PLAN = """\
name: {name}
source: {{connection: gw_mail_old}}
destination: {{connection: gw_mail_new}}
accounts: accounts.csv
delta: {{timezone: Europe/Berlin, window: any}}
state_dir: state
kinds: [mail, calendars, contacts]
groupware:
  source: {{connection: gw_dav_old}}
  destination: {{connection: gw_dav_new}}
"""


def _dav_connection(server, **extra) -> str:
    host, port = server.host, server.port
    security = "ssl" if server.scheme == "https" else "none"
    return json.dumps({"conn_type": "dav", "host": host, "port": port,
                       "extra": {"security": security, **extra}})  # fmt: skip


@pytest.fixture
def groupware_plan(tmp_path: Path, monkeypatch, legacy_imap, modern_imap, new_account, airflow_db):
    """One account: a message on the old Dovecot, the corpus on a Radicale user of the same
    name and password, an empty Xandikos user named as the destination mailbox."""
    from harness.corpus import make_message, seed_folder

    radicale, xandikos = RadicaleServer(), XandikosServer()
    radicale.start()
    xandikos.start()
    source_user, source_password = new_account(legacy_imap)
    destination_user, destination_password = new_account(modern_imap)
    client = legacy_imap.client(source_user, source_password)
    seed_folder(client, "INBOX", [(make_message(1, size=2000), ("\\Seen",),
                                   datetime(2024, 1, 2, tzinfo=UTC))])  # fmt: skip
    client.logout()
    source = radicale.add_user(source_user, source_password)
    destination = xandikos.add_user(destination_user, destination_password)
    account = DavAccount(source)
    hrefs = corpus.populate(account)

    folder = tmp_path / "dags"
    (folder / "plans").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "dags" / "migrations.py", folder / "migrations.py")
    name = "gw_" + source_user.split("@")[0]
    (folder / "plans" / f"{name}.yaml").write_text(PLAN.format(name=name))
    (folder / "plans" / "accounts.csv").write_text(
        "source_user,source_password,destination_user,destination_password\n"
        f"{source_user},{source_password},{destination_user},{destination_password}\n"
    )
    monkeypatch.delenv("MAILMIGRATE_PLANS_DIR", raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_GW_MAIL_OLD", json.dumps(legacy_imap.connection("x")))
    monkeypatch.setenv("AIRFLOW_CONN_GW_MAIL_NEW", json.dumps(modern_imap.connection("x")))
    monkeypatch.setenv("AIRFLOW_CONN_GW_DAV_OLD", _dav_connection(radicale))
    monkeypatch.setenv("AIRFLOW_CONN_GW_DAV_NEW", _dav_connection(xandikos, verify=False))
    try:
        yield folder, source_user, source, destination, account, hrefs
    finally:
        account.close()
        radicale.stop()
        xandikos.stop()


def _run(folder: Path, run_conf: dict) -> dict:
    from mailmigrate_airflow.factory import build_dags

    dag, _deltas = build_dags(str(folder / "migrations.py")).values()
    run = run_dag_test(dag, run_conf=run_conf)
    try:  # the harness's, where it keys mapped account groups (issue 18)
        from harness.airflow_env import run_outcome
    except ImportError:  # task ids are <account group>.<step>
        return _outcome(run)
    return run_outcome(run)


def _outcome(run) -> dict:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        query = XComModel.get_many(run_id=run.run_id, dag_ids=run.dag_id, key="return_value")
        xcoms = {x.task_id: XComModel.deserialize_value(x) for x in session.scalars(query)}
        states = {ti.task_id: ti.state for ti in run.get_task_instances(session=session)}
    return {"states": states, "xcoms": xcoms}


def test_calendars_and_contacts_move_in_the_mail_tasks(groupware_plan, capfd):
    folder, user, source, destination, account, hrefs = groupware_plan
    group = user.replace("@", "_").replace(".", "_")

    first = _run(folder, {"stop": "initial_copy"})
    logs = "".join(capfd.readouterr())
    assert first["states"][f"{group}.test"] == first["states"][f"{group}.initial_copy"] == "success"
    tested = first["xcoms"][f"{group}.test"]["groupware"]
    assert tested["source"] == {"calendars": 2, "events": 4, "task_lists": 1, "tasks": 3,
                                "address_books": 1, "contacts": 3}  # fmt: skip
    assert tested["mapping"] == [
        "default calendar 'Calendar' -> existing 'calendar'",
        "addressbook 'Contacts' -> new 'Contacts'",
        "calendar 'Work' -> new 'Work'",
    ]
    copied = first["xcoms"][f"{group}.initial_copy"]
    assert copied["totals"]["copied"] == 1  # the mail
    assert copied["groupware"]["done"]["added"] == 7 and copied["groupware"]["problem_count"] == 0
    assert copied["groupware"]["destination"]["events"] == 4
    assert copied["groupware"]["destination"]["contacts"] == 3
    assert "----- groupware (calendars, contacts): initial copy -----" in logs
    assert "groupware: source: 2 calendars (4 events)" in logs
    src, dst = corpus.snapshot(source), corpus.snapshot(destination)
    assert dst["calendar"][1] == src["Calendar"][1] and dst["Work"][1] == src["Work"][1]
    assert dst["Contacts"][1] == src["Contacts"][1]
    assert "Tasks" not in dst  # tasks are not in the plan's kinds

    # a change on the source, then the whole rhythm: the initial copy takes it, the delta
    # finds nothing left to do
    account.put("calendar", f"{hrefs['Calendar']}late.ics",
                corpus.WORK.replace("work-review", "late"), None)  # fmt: skip
    second = _run(folder, {})
    assert second["states"][f"{group}.delta_copy"] == "success"
    again = second["xcoms"][f"{group}.initial_copy"]["groupware"]["done"]
    assert (again["added"], again["unchanged"]) == (1, 0)
    delta = second["xcoms"][f"{group}.delta_copy"]["groupware"]
    assert delta["phase"] == "delta" and delta["done"]["added"] == delta["done"]["updated"] == 0
    assert delta["source"]["events"] == delta["destination"]["events"] == 5
    assert corpus.snapshot(destination)["calendar"][1] == corpus.snapshot(source)["Calendar"][1]

    # the status page counts events and contacts per side
    from airflow.utils.session import create_session

    from mailmigrate_airflow.ui.loading import load_run
    from mailmigrate_airflow.ui.page import render_page
    from mailmigrate_airflow.ui.status import migration_status
    from mailmigrate_airflow.ui.totals import select_rows

    (plan,) = (folder / "plans").glob("*.yaml")
    with create_session() as session:
        status = migration_status(load_run(session, f"migration_{plan.stem}"))
    (row,) = status["accounts"]
    assert row["groupware"]["source"] == row["groupware"]["destination"] == {
        "calendars": 2, "events": 5, "task_lists": 0, "tasks": 0, "address_books": 1,
        "contacts": 3}  # fmt: skip
    page = render_page([], {**select_rows(status, None, None, 1), "runs": []}, "")
    assert (
        page.count('title="2 calendars, 0 task lists, 1 address books">5 events, 3 contacts') == 2
    )


def test_owner_report_counts_groupware_per_side_with_problems_in_plain_words():
    from mailmigrate.owner_report import build_owner_report
    from mailmigrate.owner_report_render import render_csv, render_html, render_text
    from mailmigrate.plan import Account
    from mailmigrate.results import AccountResult

    counts = {"calendars": 2, "events": 40, "task_lists": 1, "tasks": 3, "address_books": 1,
              "contacts": 120}  # fmt: skip
    summary = {"phase": "initial", "source": counts, "destination": {**counts, "events": 39},
               "done": {}, "renamed": [], "problem_count": 1,
               "problems": ["Work: item review@x: not copied: the new server refused it (413)"]}  # fmt: skip
    result = AccountResult("ann@old.example", "initial", groupware=summary)
    report = build_owner_report("acme", Account("ann@old.example", "ann@new.example"), result)
    text, html, table = render_text(report), render_html(report), render_csv(report)
    assert not report.ok and report.to_dict()["groupware"]["problem_count"] == 1
    assert "1 calendar or contact item not copied as it is" in text
    assert "  Events: 40 -> 39" in text and "  Contacts: 120 -> 120" in text
    assert "Calendar or address book Work: item review@x: not copied" in text
    assert "<h2>Calendars, contacts and tasks</h2>" in html and "39</td>" in html
    assert "groupware,Events,Events,40,,39" in table
