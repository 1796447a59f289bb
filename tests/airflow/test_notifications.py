"""Notifications, received by a real SMTP server on loopback: the owners' mails with their reports
after each copy, and the ops mails on cutover_ready, a task's final failure and the end of a run,
from the shipped templates or the plan's own."""

from __future__ import annotations

import logging

import pytest
from harness.ops_helpers import (
    OPS,
    attachments,
    html_part,
    set_connection,
)

from mailmigrate.plan import load_plan
from mailmigrate_airflow.notifiers import PlanEventNotifier, cutover_announcement, send_event
from mailmigrate_airflow.reports import safe_part


@pytest.fixture
def migration(main_migration_run):
    return main_migration_run


@pytest.fixture
def failed(failing_migration_run):
    return failing_migration_run


def test_each_owner_gets_the_report_of_each_copy(migration, smtp):
    sink = smtp
    name = migration.dag.dag_id.removeprefix("migration_")
    for account in migration.accounts:
        owner = account["destination_user"]
        mails = sink.wait_for(owner, 2)
        # The plan's mail_templates/owner_report.subject.j2 replaces the shipped subject.
        assert [m["Subject"] for m in mails] == [
            f"{name}: your mailbox {owner} (initial_copy)",
            f"{name}: your mailbox {owner} (delta_copy)",
        ]
        first, last = mails
        assert first["From"] == "IT team <it@example.com>" and first["To"] == owner
        body = html_part(first)
        assert "we have copied your mailbox" in body  # the shipped body template
        assert f"Mailbox migration report: {account['source_user']}" in body
        assert "Your mail client settings on the new server" in body and "imap.new.example" in body
        assert "Please set up your mail program" in html_part(last)
        group = account["source_user"].replace("@", "_").replace(".", "_")
        stored = migration.extra["reports"] / migration.dag.dag_id / safe_part(migration.run_id) / group  # fmt: skip
        for mail, phase in ((first, "initial"), (last, "delta")):
            files = attachments(mail)
            assert set(files) == {f"mailbox-report-{phase}.html", f"mailbox-report-{phase}.csv"}
            for suffix in ("html", "csv"):
                assert files[f"mailbox-report-{phase}.{suffix}"] == (stored / f"{phase}.{suffix}").read_bytes()  # fmt: skip
        everything = first.as_string() + last.as_string()
        assert account["source_password"] not in everything
        assert account["destination_password"] not in everything
        assert migration.xcom(f"{group}.delta_copy", "owner_report")["mailed_to"] == owner


def test_ops_hear_about_the_cutover_and_the_end_of_the_run(migration, smtp):
    name = migration.dag.dag_id.removeprefix("migration_")
    mails = smtp.wait_for(OPS, 2)
    subjects = [m["Subject"] for m in mails]
    assert subjects == [
        f"[{name}] {name}: all 2 initial copies done, change the MX record now",
        f"[{name}] {name}: migration run finished, every selected task succeeded",
    ]
    cutover = html_part(mails[0])
    assert "Point the MX records of example.com to mx.new.example." in cutover
    assert migration.run_id in cutover  # the footer names the run


def test_a_final_failure_mails_ops_once_and_the_owner_their_report(failed, smtp):
    sink = smtp
    account = failed.accounts[0]
    name = failed.dag.dag_id.removeprefix("migration_")
    ops = sink.wait_for("ops-failures@example.com", 2)
    assert [m["Subject"] for m in ops] == [
        f"[{name}] {account['source_user']}: initial_copy failed",
        f"[{name}] {name}: migration run finished with failures",
    ]
    failure = html_part(ops[0])
    assert "1 messages refused" in failure and "AirflowFailException" in failure
    (owner,) = sink.wait_for(account["destination_user"], 1)
    assert owner["Subject"] == f"Your mailbox {account['destination_user']}: the copy needs attention"  # fmt: skip
    body = html_part(owner)
    assert "Not everything arrived" in body and "What failed and why" in body
    assert failed.state == "failed"


def test_failure_notifiers_are_failure_callbacks_not_retry_callbacks(migration):
    """Airflow calls on_failure_callback after the last retry only (on_retry_callback before)."""
    task = migration.dag.get_task("account.initial_copy")
    (callback,) = task.on_failure_callback
    assert isinstance(callback, PlanEventNotifier) and callback.event == "task_failed"
    assert not task.on_retry_callback
    assert [c.event for c in migration.dag.on_success_callback] == ["finished"]
    assert [c.event for c in migration.dag.on_failure_callback] == ["finished"]


def test_plan_templates_override_the_ops_mail_and_a_broken_notifier_does_not_stop_the_others(
    tmp_path, smtp
):
    sink = smtp
    set_connection("mmnotify_smtp", sink.connection())
    (tmp_path / "tpl").mkdir()
    (tmp_path / "tpl" / "ops_cutover_ready.subject.j2").write_text("GO {{ event.facts.domains | join(',') }}")  # fmt: skip
    (tmp_path / "tpl" / "ops_cutover_ready.html.j2").write_text("<p>{{ event.message }} ({{ event.run_id }})</p>")  # fmt: skip
    (tmp_path / "accounts.csv").write_text(
        "source_user,source_password,destination_user,destination_password\n"
        "a@old.example,,a@one.example,\nb@old.example,,b@two.example,\n"
    )
    (tmp_path / "tpl_plan.yaml").write_text(
        "name: tpl\nsource: {connection: x}\ndestination: {connection: y}\n"
        "accounts: accounts.csv\nreports: {templates: tpl}\n"
        "notify:\n"
        "  - notifier: no_such_module.Notifier\n"
        "  - notifier: mailmigrate_airflow.notifiers.MigrationMailNotifier\n"
        "    args: {to: [tpl-ops@example.com, tpl-lead@example.com], smtp_conn_id: mmnotify_smtp}\n"
    )
    plan = load_plan(tmp_path / "tpl_plan.yaml")
    cutover = cutover_announcement(plan, ["one.example", "two.example"])
    with pytest.raises(Exception, match=r"tpl_plan.yaml:7: notify: no_such_module.Notifier: cannot set it up"):  # fmt: skip
        send_event(plan, {"dag": None, "run_id": "r-42"}, "cutover_ready", cutover, logging.getLogger())  # fmt: skip
    (mail,) = sink.wait_for("tpl-lead@example.com", 1)
    assert mail["Subject"] == "GO one.example,two.example"
    assert html_part(mail).strip() == (
        "<p>tpl: all 2 initial copies done, change the MX record now.\n"
        "Change the MX records of one.example, two.example to the new servers.\n"
        "The plan has no mx section: the delta copies do not wait for DNS. (r-42)</p>"
    )
    assert sink.to("tpl-ops@example.com") == [mail]
