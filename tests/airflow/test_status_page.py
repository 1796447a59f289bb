"""The migration status page in Airflow's API server: its JSON API and its HTML, over real runs
(the shared migrations of ops_helpers), its login and permissions, and its plugin registration."""

from __future__ import annotations

import datetime as dt
import html
from urllib.parse import quote

import pytest
from harness.airflow_env import register_dag
from harness.ops_helpers import NEW_MX, client

from mailmigrate.plan import DeltaWindow, load_plan
from mailmigrate.window import next_window_start
from mailmigrate_airflow.factory import build_dag
from mailmigrate_airflow.ui.page import render_page


def _group(user: str) -> str:
    return user.replace("@", "_").replace(".", "_")


def _sizes(server, user: str, password: str) -> tuple[int, int]:
    """(messages, bytes) of a whole mailbox, straight from the IMAP server."""
    imap = server.client(user, password)
    try:
        count = size = 0
        for _, _, name in imap.list_folders():
            if imap.select_folder(name, readonly=True)[b"EXISTS"]:
                fetched = imap.fetch(imap.search("ALL"), ["RFC822.SIZE"])
                count += len(fetched)
                size += sum(d[b"RFC822.SIZE"] for d in fetched.values())
        return count, size
    finally:
        imap.logout()


@pytest.fixture
def migration(main_migration_run):
    return main_migration_run


def test_the_plugin_puts_the_page_in_the_navigation(airflow_db):
    response = client().get("/api/v2/plugins")
    (plugin,) = [p for p in response.json()["plugins"] if p["name"] == "mailmigrate"]
    (view,) = plugin["external_views"]
    assert (view["href"], view["destination"], view["nav_top_level"]) == ("/mailmigrate/", "nav", True)  # fmt: skip
    assert plugin["fastapi_apps"][0]["url_prefix"] == "/mailmigrate"


def test_status_api_of_a_finished_run_has_every_accounts_numbers(
    migration, legacy_imap, modern_imap
):
    response = client().get(f"/mailmigrate/api/migrations/{migration.dag.dag_id}")
    assert response.status_code == 200
    status = response.json()
    assert status["run"]["run_id"] == migration.run_id and status["run"]["state"] == "success"
    rows = {row["account"]: row for row in status["accounts"]}
    assert set(rows) == {a["source_user"] for a in migration.accounts}
    for index, (account, folders) in enumerate(zip(migration.accounts, (3, 1), strict=True)):
        row = rows[account["source_user"]]
        source = _sizes(legacy_imap, account["source_user"], account["source_password"])
        destination = _sizes(modern_imap, account["destination_user"], account["destination_password"])  # fmt: skip
        assert row["destination_account"] == account["destination_user"]
        assert row["phase"] == {"key": "done", "label": "done", "step": "delta_copy", "filter": "done"}  # fmt: skip
        assert (row["source"]["messages"], row["source"]["bytes"]) == source
        assert (row["destination"]["messages"], row["destination"]["bytes"]) == destination == source  # fmt: skip
        assert row["destination"]["missing"] == 0
        assert (
            row["copied"]["messages"],
            row["copied"]["bytes"],
        ) == source  # all in the initial copy
        assert row["folders"] == folders and row["failed_messages"] == 0 and row["errors"] == []
        assert row["mx"]["domain"] == "example.com" and row["mx"]["state"] == "propagated"
        assert row["mx"]["mx"] == [NEW_MX]
        assert row["last_delta"] == row["steps"]["delta_copy"]["end_date"] is not None
        assert row["next_delta"] is None
        group = _group(account["source_user"])
        run = quote(migration.run_id, safe="")
        # The account's instance of the mapped step (the grid shows it as the mailbox).
        assert row["steps"]["initial_copy"]["url"] == f"/dags/{migration.dag.dag_id}/runs/{run}/tasks/account.initial_copy/mapped/{index}"  # fmt: skip
        assert set(row["reports"]) == {"initial", "delta"}
        assert row["reports"]["delta"]["mailed_to"] == account["destination_user"]
        assert row["reports"]["initial"]["html"] == migration.xcom(f"{group}.initial_copy", "_link_OwnerReportLink")  # fmt: skip
    totals = status["totals"]
    assert (totals["accounts"], totals["selected"], totals["done"], totals["failed"]) == (
        2,
        2,
        2,
        0,
    )
    assert totals["initial_done"] == 2 and totals["states"]["done"] == 2
    assert totals["source_messages"] == totals["destination_messages"] == totals["copied_messages"] == 11  # fmt: skip
    assert totals["estimate"] == {"seconds": 0, "remaining_accounts": 0, "basis": "every selected initial copy is done"}  # fmt: skip
    (domain,) = status["domains"]
    assert (domain["domain"], domain["accounts"], domain["state"]) == (
        "example.com",
        2,
        "propagated",
    )
    assert domain["expect"] == domain["mx"] == [NEW_MX] and domain["seen"] is None
    ends = [row["steps"]["delta_copy"]["end_date"] for row in status["accounts"]]
    assert status["cutover"] == {"kind": "done", "at": max(ends)}  # the migration's "done" banner
    assert [(t["task_id"], t["state"]) for t in status["extra_tasks"]] == [
        ("cutover_ready", "success")
    ]


def test_status_api_shows_a_failed_account_with_the_reason(
    failing_migration_run,
):
    run = failing_migration_run
    status = (
        client()
        .get(f"/mailmigrate/api/migrations/{run.dag.dag_id}", params={"run_id": run.run_id})
        .json()
    )
    (row,) = status["accounts"]
    assert row["phase"] == {"key": "failed", "label": "initial copy failed", "step": "initial_copy", "filter": "failed"}  # fmt: skip
    assert row["failed_messages"] == 1 and row["destination"]["missing"] == 1
    assert any("refused" in error and "INBOX" in error for error in row["errors"])
    assert row["mx"]["state"] == "not checked"  # the plan has no mx section
    assert (
        status["totals"]["failed"] == 1 and status["totals"]["estimate"]["remaining_accounts"] == 0
    )


def test_the_page_lists_migrations_and_renders_the_rows(migration):
    dag_id = migration.dag.dag_id
    listing = client().get("/mailmigrate/api/migrations").json()["migrations"]
    mine = next(m for m in listing if m["dag_id"] == dag_id)
    assert mine["last_run"]["run_id"] == migration.run_id and mine["description"].startswith("2 mailboxes")  # fmt: skip

    page = client().get(f"/mailmigrate/migrations/{dag_id}")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    text = html.unescape(page.text)
    for account in migration.accounts:
        assert f'<tr data-account="{account["source_user"]}">' in text
        assert f"→ {account['destination_user']}" in text
    assert text.count('<span class="badge done">✓ done</span>') == 2
    group = _group(migration.accounts[0]["source_user"])
    log_link = f'href="/dags/{dag_id}/runs/{quote(migration.run_id, safe="")}/tasks/account.initial_copy/mapped/0" target="_top"'  # fmt: skip
    assert log_link in page.text.replace("&amp;", "&")
    report = migration.xcom(f"{group}.initial_copy", "_link_OwnerReportLink")
    assert f'href="{report}"' in page.text
    assert "example.com" in text and "propagated" in text
    assert '<div class="v">2 / 2</div><div class="l">initial copies done</div>' in text
    assert "left for the initial copies" not in text  # no stale estimate once the run is over
    assert "Migration done." in text and "run finished" in text
    index = client().get("/mailmigrate/").text
    assert f'href="/mailmigrate/migrations/{dag_id}"' in index

    # Under an API server mounted at a sub-path, every link keeps to it.
    status = client().get(f"/mailmigrate/api/migrations/{dag_id}").json()
    shifted = render_page(listing, status, "/airflow")
    assert 'href="/airflow/dags/' in shifted and 'href="/airflow/mailmigrate/reports/' in shifted
    assert 'href="/dags/' not in shifted and 'href="/mailmigrate/' not in shifted


def test_login_and_dag_permissions_are_enforced(migration):
    dag_id = migration.dag.dag_id
    anonymous = client()
    anonymous.cookies.clear()
    for path in ("/mailmigrate/", "/mailmigrate/api/migrations", f"/mailmigrate/api/migrations/{dag_id}"):  # fmt: skip
        assert anonymous.get(path).status_code == 401
    nobody = client("nobody", role=None)
    assert nobody.get("/mailmigrate/api/migrations").json() == {"migrations": []}
    assert nobody.get(f"/mailmigrate/api/migrations/{dag_id}").status_code == 403
    assert nobody.get(f"/mailmigrate/migrations/{dag_id}").status_code == 403
    viewer = client("vera", role="viewer")
    assert viewer.get(f"/mailmigrate/api/migrations/{dag_id}").status_code == 200
    assert client().get("/mailmigrate/api/migrations/migration_nope").status_code == 404
    assert client().get(f"/mailmigrate/api/migrations/{dag_id}", params={"run_id": "nope"}).status_code == 404  # fmt: skip


def test_a_migration_that_never_ran_shows_when_the_delta_window_opens(airflow_db, tmp_path):
    plans = tmp_path / "plans"
    plans.mkdir()
    (plans / "accounts.csv").write_text(
        "source_user,source_password,destination_user,destination_password\n"
        "a@old.example,,a@new.example,\n"
    )
    (plans / "waiting.yaml").write_text(
        "name: waiting_window\nsource: {connection: x}\ndestination: {connection: y}\n"
        "accounts: accounts.csv\n"
        "mx: {expect: [mx.new.example], resolvers: ['127.0.0.1:53']}\n"
        "delta: {timezone: Europe/Berlin, window: '19:00-06:00', weekdays: [mon, tue, wed, thu, fri]}\n"
    )
    register_dag(build_dag(load_plan(plans / "waiting.yaml"), "waiting.yaml", str(tmp_path / "migrations.py")))  # fmt: skip
    status = client().get("/mailmigrate/api/migrations/migration_waiting_window").json()
    assert status["run"] is None and status["totals"]["estimate"] is None
    (row,) = status["accounts"]
    assert row["phase"]["label"] == "before test" and row["mx"]["state"] == "not yet checked"
    # The window comes from the serialized DAG: Berlin time, 19:00-06:00, Monday to Friday.
    now = dt.datetime.fromisoformat(status["generated_at"])
    window = DeltaWindow("Europe/Berlin", (dt.time(19), dt.time(6)), (0, 1, 2, 3, 4))
    assert dt.datetime.fromisoformat(row["next_delta"]["at"]) == next_window_start(now, window)
    page = client().get("/mailmigrate/migrations/migration_waiting_window").text
    assert "This migration has not run yet" in page


def test_the_status_is_reused_until_the_run_changes(migration):
    """A 10,000-account status takes seconds to compute: paging and filtering reuse it while no
    task instance of the run changed, and any change computes it anew."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import update

    from mailmigrate_airflow.ui.status import run_status

    dag_id = migration.dag.dag_id
    with create_session() as session:
        first = run_status(session, dag_id)
        assert run_status(session, dag_id)["accounts"] is first["accounts"]
        session.execute(
            update(TaskInstance)
            .where(TaskInstance.dag_id == dag_id, TaskInstance.task_id == "cutover_ready")
            .values(updated_at=dt.datetime.now(dt.UTC))
        )
        again = run_status(session, dag_id)
    assert again["accounts"] is not first["accounts"] and again["accounts"] == first["accounts"]
