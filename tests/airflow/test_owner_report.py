"""Owner reports: the engine's rendering (pure), and the reports a real copy through the DAG
writes, links from its task and serves through the status page's app."""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path
from urllib.parse import quote

import pytest
from harness.ops_helpers import client

from mailmigrate.connections import Endpoint
from mailmigrate.owner_report import build_owner_report
from mailmigrate.owner_report_render import render_csv, render_html, render_text
from mailmigrate.plan_model import Account, ClientSettings, ServerSettings
from mailmigrate.report import AccountReport, FolderComparison
from mailmigrate.results import AccountResult, FolderResult, MessageFailure
from mailmigrate_airflow.reports import safe_part

WHEN = dt.datetime(2024, 6, 3, 18, 30, tzinfo=dt.UTC)
ACCOUNT = Account("alice@old.example", "alice@new.example")


def _result() -> AccountResult:
    return AccountResult(
        account=ACCOUNT.source_user,
        phase="initial",
        seconds=2.5,
        folders=[
            FolderResult("INBOX", "INBOX", source_messages=3, source_bytes=3000, copied=2,
                         copied_bytes=2000, failed=1),
            FolderResult("<script>alert(1)</script>", "=cmd|' /C calc'!A0", source_messages=1,
                         source_bytes=10, copied=1, copied_bytes=10,
                         renamed="'<script>' cannot be a folder name here"),
        ],
        failures=[MessageFailure("INBOX", "17", 90_000, "[LIMIT] Mail too large")],
    )  # fmt: skip


def _comparison() -> AccountReport:
    return AccountReport(
        account=ACCOUNT.source_user,
        destination_account=ACCOUNT.destination_user,
        folders=[
            FolderComparison("INBOX", "INBOX", 3, 3000, 2, 2000, missing=1, extra=0),
            FolderComparison("<script>alert(1)</script>", "=cmd|' /C calc'!A0", 1, 10, 1, 10,
                             missing=0, extra=0, renamed="'<script>' cannot be a folder name here"),
        ],
        excluded=["Junk"],
    )  # fmt: skip


def test_report_joins_the_pass_with_the_verified_comparison():
    report = build_owner_report("acme", ACCOUNT, _result(), _comparison(), generated_at=WHEN)
    assert report.verified and not report.ok
    assert report.totals() == {
        "source_messages": 4, "source_bytes": 3010, "destination_messages": 3,
        "destination_bytes": 2010, "copied": 3, "copied_bytes": 2010, "missing": 1, "extra": 0,
        "refused": 1,
    }  # fmt: skip
    text = render_text(report)
    assert "Not everything arrived: 1 message not on the new server yet; 1 message refused by" in text  # fmt: skip
    assert "refused: INBOX message 17 (87.9 KB): [LIMIT] Mail too large" in text
    assert "Junk: not copied (excluded by the migration plan)" in text


def test_html_escapes_every_mailbox_value_and_ends_with_the_client_settings():
    settings = ClientSettings(
        smtp=ServerSettings("smtp.new.example", None, "starttls"),
        autoconfig="https://autoconfig.new.example/mail/config-v1.1.xml",
    )
    destination = Endpoint("new", "imap", "imap.new.example", None, extra={"security": "starttls"})
    report = build_owner_report("acme", ACCOUNT, _result(), _comparison(), settings=settings,
                                destination=destination, generated_at=WHEN)  # fmt: skip
    html = render_html(report)
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Message 17 in INBOX (87.9 KB): [LIMIT] Mail too large" in html
    settings_at = html.index("Your mail client settings on the new server")
    assert settings_at > html.index("What failed and why") > html.index("Renamed folders")
    tail = html[settings_at:]
    # IMAP from the destination connection (STARTTLS: port 143), SMTP from the plan (587).
    assert "Server <strong>imap.new.example</strong>, port 143, security STARTTLS" in tail
    assert "Server <strong>smtp.new.example</strong>, port 587, security STARTTLS" in tail
    assert "<strong>alice@new.example</strong>" in tail
    assert 'href="https://autoconfig.new.example/mail/config-v1.1.xml"' in tail
    fragment = render_html(report, standalone=False)
    assert not fragment.startswith("<!DOCTYPE") and "mailmigrate-report" in fragment


def test_csv_rows_never_run_as_spreadsheet_formulas():
    report = build_owner_report("acme", ACCOUNT, _result(), _comparison(), generated_at=WHEN)
    rows = list(csv.DictReader(io.StringIO(render_csv(report))))
    assert [r["row"] for r in rows] == ["folder", "folder", "message", "total"]
    assert rows[1]["source_folder"] == "<script>alert(1)</script>"
    assert rows[1]["destination_folder"] == "'=cmd|' /C calc'!A0"  # quoted: text, not a formula
    assert rows[2]["problem"] == "message 17: [LIMIT] Mail too large" and rows[2]["source_bytes"] == "90000"  # fmt: skip
    assert (rows[3]["source_messages"], rows[3]["missing"], rows[3]["refused"]) == ("4", "1", "1")


def test_without_a_comparison_a_delta_reports_what_it_knows():
    result = AccountResult(ACCOUNT.source_user, "delta", folders=[
        FolderResult("INBOX", "INBOX", source_messages=5, source_bytes=100, destination_messages=5,
                     copied=1, copied_bytes=100)])  # fmt: skip
    report = build_owner_report("acme", ACCOUNT, result, comparison_error="reports.compare is off")
    (folder,) = report.folders
    assert (folder.source_messages, folder.source_bytes, folder.destination_bytes) == (
        5,
        None,
        None,
    )
    assert report.totals()["source_bytes"] is None and not report.verified
    html = render_html(report)
    assert "not listed again afterwards (reports.compare is off)" in html
    assert "1 message copied; the result was not re-checked." in html
    assert render_text(report).count("Your mail client settings") == 0  # no settings known


def test_where_reports_go(tmp_path, monkeypatch):
    from mailmigrate.plan import load_plan
    from mailmigrate_airflow.reports import REPORTS_URL_ENV, reports_root_url

    (tmp_path / "accounts.csv").write_text(
        "source_user,destination_user\na@x.example,a@y.example\n"
    )
    base = "name: where\nsource: {connection: a}\ndestination: {connection: b}\naccounts: accounts.csv\n"
    (tmp_path / "default.yaml").write_text(base)
    (tmp_path / "planned.yaml").write_text(base + "reports: {url: 's3://bucket/reports'}\n")
    monkeypatch.delenv(REPORTS_URL_ENV, raising=False)
    default = reports_root_url(load_plan(tmp_path / "default.yaml"))
    assert default.startswith("file:///") and default.endswith("/mailmigrate/reports")
    monkeypatch.setenv(REPORTS_URL_ENV, "gs://team/mm")
    assert reports_root_url(load_plan(tmp_path / "default.yaml")) == "gs://team/mm"
    assert reports_root_url(load_plan(tmp_path / "planned.yaml")) == "s3://bucket/reports"


# -- a real copy -----------------------------------------------------------------------------


def _folder_sizes(server, user: str, password: str) -> dict[str, tuple[int, int]]:
    """(messages, bytes) per folder, straight from the IMAP server."""
    imap = server.client(user, password)
    try:
        sizes = {}
        for _, _, name in imap.list_folders():
            info = imap.select_folder(name, readonly=True)
            uids = imap.search("ALL") if info[b"EXISTS"] else []
            fetched = imap.fetch(uids, ["RFC822.SIZE"]) if uids else {}
            sizes[name] = (len(uids), sum(d[b"RFC822.SIZE"] for d in fetched.values()))
        return sizes
    finally:
        imap.logout()


@pytest.fixture
def migration(main_migration_run):
    return main_migration_run


def test_reports_of_a_real_copy_match_both_servers(migration, legacy_imap, modern_imap):
    account = migration.accounts[0]
    group = account["source_user"].replace("@", "_").replace(".", "_")
    source = _folder_sizes(legacy_imap, account["source_user"], account["source_password"])
    destination = _folder_sizes(modern_imap, account["destination_user"], account["destination_password"])  # fmt: skip
    expected = {  # report folder (source path) -> (source folder, destination folder)
        "INBOX": ("INBOX", "INBOX"),
        "Sent": ("INBOX.Sent", "Sent"),
        "Projects": ("INBOX.Projects", "Archive/Projects"),  # folders.rename in the plan
    }
    folder = migration.extra["reports"] / migration.dag.dag_id / safe_part(migration.run_id) / group
    for phase in ("initial", "delta"):
        rows = list(csv.DictReader(io.StringIO((folder / f"{phase}.csv").read_text())))
        by_folder = {r["source_folder"]: r for r in rows if r["row"] == "folder"}
        assert set(by_folder) == set(expected)
        for name, (src, dst) in expected.items():
            row = by_folder[name]
            assert row["destination_folder"] == dst
            assert (int(row["source_messages"]), int(row["source_bytes"])) == source[src]
            assert (int(row["destination_messages"]), int(row["destination_bytes"])) == destination[dst]  # fmt: skip
            assert row["missing"] == "0" and row["problem"] == ""
        assert by_folder["Projects"]["renamed"] and not by_folder["Sent"]["renamed"]
        copied = sum(int(r["copied_messages"]) for r in by_folder.values())
        assert copied == (8 if phase == "initial" else 0)
        total = next(r for r in rows if r["row"] == "total")
        assert int(total["source_messages"]) == sum(source[s][0] for s, _ in expected.values()) == 8

    html = (folder / "initial.html").read_text()
    assert f"Mailbox migration report: {account['source_user']}" in html
    assert "All 8 messages of your 3 folders are on the new server." in html
    assert "Projects is now <strong>Archive/Projects</strong>" in html
    settings = html[html.index("Your mail client settings") :]
    assert "Server <strong>imap.new.example</strong>, port 993, security SSL/TLS" in settings
    assert "Server <strong>smtp.new.example</strong>, port 587, security STARTTLS" in settings
    assert account["destination_user"] in settings and "config-v1.1.xml" in settings
    assert account["source_password"] not in html and account["destination_password"] not in html

    record = migration.xcom(f"{group}.initial_copy", "owner_report")
    assert record["summary"]["ok"] and record["summary"]["verified"]
    assert record["html"].endswith(f"/{group}/initial.html")


def test_the_task_links_its_report_and_the_api_server_serves_it(migration):
    group = migration.accounts[1]["source_user"].replace("@", "_").replace(".", "_")
    task_id = f"{group}.initial_copy"
    link = migration.xcom(task_id, "_link_OwnerReportLink")
    run = quote(migration.run_id, safe="")
    # The second account's instance of the mapped copy task, as the grid's button links it.
    path = f"/mailmigrate/reports/{migration.dag.dag_id}/{run}/account.initial_copy"
    assert link == f"{path}.html?map_index=1"

    stored = migration.xcom(task_id, "owner_report")
    page = client().get(link)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.text == Path(stored["html"].removeprefix("file://")).read_text(encoding="utf-8")
    sheet = client().get(link.replace(".html", ".csv"))
    assert sheet.status_code == 200 and sheet.headers["content-type"].startswith("text/csv")
    assert "attachment" in sheet.headers["content-disposition"]
    assert sheet.text.startswith("row,source_folder,destination_folder")

    assert client(role=None).get(link).status_code == 403
    anonymous = client()
    anonymous.cookies.clear()
    assert anonymous.get(link).status_code == 401
    missing = link.replace("initial_copy", "test")
    assert client().get(missing).status_code == 404
    assert client().get(link.replace("map_index=1", "map_index=7")).status_code == 404


def test_a_refused_message_is_in_the_report_with_the_servers_reason(
    failing_migration_run,
):
    run = failing_migration_run
    group = run.accounts[0]["source_user"].replace("@", "_").replace(".", "_")
    assert run.states[f"{group}.initial_copy"] == "failed"
    record = run.xcom(f"{group}.initial_copy", "owner_report")
    assert record["summary"]["ok"] is False and record["summary"]["refused"] == 1
    assert record["summary"]["totals"]["missing"] == 1
    url = f"/mailmigrate/reports/{run.dag.dag_id}/{quote(run.run_id, safe='')}/account.initial_copy.csv?map_index=0"
    rows = list(csv.DictReader(io.StringIO(client().get(url).text)))
    (message,) = [r for r in rows if r["row"] == "message"]
    assert message["source_folder"] == "INBOX" and int(message["source_bytes"]) >= 90_000
    assert "too large" in message["problem"].lower() or "limit" in message["problem"].lower()
    (inbox,) = [r for r in rows if r["row"] == "folder"]
    assert (inbox["source_messages"], inbox["destination_messages"], inbox["missing"]) == (
        "3",
        "2",
        "1",
    )
    html = Path(record["html"].removeprefix("file://")).read_text(encoding="utf-8")
    assert "What failed and why" in html and message["problem"].split(": ", 1)[1] in html


def test_only_a_try_whose_outcome_stands_mails_the_owner():
    """A pass that left messages missing is retried: its report is mailed on the last try only."""
    from mailmigrate_airflow.reports import is_final_try

    class Try:
        def __init__(self, number: int) -> None:
            self.try_number, self.max_tries = number, 3

    def final(folder: FolderResult, number: int = 1) -> bool:
        result = AccountResult("alice@old.example", "initial", folders=[folder])
        return is_final_try(result, {"ti": Try(number)})

    assert final(FolderResult("INBOX", "INBOX", copied=5))  # copied: stands
    assert final(FolderResult("INBOX", "INBOX", copied=4, failed=1))  # refused: never retried
    assert not final(FolderResult("INBOX", "INBOX", copied=5, missing=2))  # retried
    assert final(FolderResult("INBOX", "INBOX", copied=5, missing=2), number=4)  # the last try
    assert not final(FolderResult("INBOX", "INBOX", error="connection lost"))
