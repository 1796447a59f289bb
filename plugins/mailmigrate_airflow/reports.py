"""Owner reports after each copy: written through Airflow's object storage, linked from the task,
optionally mailed to the mailbox's owner.

After ``initial_copy`` and ``delta_copy``, :func:`publish_owner_report` lists both sides again
(``reports.compare``), builds the report in the engine (:mod:`mailmigrate.owner_report`), writes
``<phase>.html`` and ``<phase>.csv`` under::

    <root>/<dag_id>/<run_id>/<account group>/

where ``<root>`` is the plan's ``reports.url``, else ``$MAILMIGRATE_REPORTS_URL``, else
``$AIRFLOW_HOME/mailmigrate/reports`` (any fsspec URL: ``s3://...`` with ``reports.conn_id``),
and pushes where they are as the XCom ``owner_report``. The task's "Owner report" link
(:class:`OwnerReportLink`) opens it through the status page's API server app, which reads it
back from the storage (:func:`stored_report`): from the root the copy task was serialized with
and the run and task ids only, never from a location in an XCom (any role allowed to write
XComs could point it elsewhere). A report never fails the copy: problems are logged and
recorded in that XCom.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from airflow.configuration import AIRFLOW_HOME
from airflow.sdk import BaseOperatorLink, ObjectStoragePath
from markupsafe import Markup

from mailmigrate.owner_report import build_owner_report
from mailmigrate.owner_report_render import render_csv, render_html
from mailmigrate_airflow.mail import render_mail, send_mail
from mailmigrate_airflow.runs import report_url

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator, Context
    from airflow.sdk.types import TaskInstanceKey

    from mailmigrate.connections import Endpoint
    from mailmigrate.owner_report import OwnerReport
    from mailmigrate.plan import Account, Plan
    from mailmigrate.results import AccountResult

REPORTS_URL_ENV = "MAILMIGRATE_REPORTS_URL"
XCOM_KEY = "owner_report"
PHASE_STEPS = {"initial": "initial_copy", "delta": "delta_copy"}


def reports_root_url(plan: Plan) -> str:
    """Where this plan's reports go (see the module docstring)."""
    return root_url(plan.reports.url)


def root_url(configured: str | None) -> str:
    """The reports root: ``configured`` (a plan's ``reports.url``), else
    ``$MAILMIGRATE_REPORTS_URL``, else ``$AIRFLOW_HOME/mailmigrate/reports``."""
    if configured:
        return configured
    if os.environ.get(REPORTS_URL_ENV, "").strip():
        return os.environ[REPORTS_URL_ENV].strip()
    return f"file://{os.path.abspath(AIRFLOW_HOME)}/mailmigrate/reports"


SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
ESCAPE = "~"


def safe_part(text: str) -> str:
    """A path segment for a DAG id, run id or group id: letters, digits and ``._-`` as they are,
    every other character (``~`` included) as ``~`` and the hex of its UTF-8 bytes.

    Invariant: injective (``~`` only ever starts an escape, so the segment decodes back to
    ``text``): two runs never share a report folder, e.g. ``...T04:37:09+00:00`` is
    ``...T04~3A37~3A09~2B00~3A00`` and ``...T04_37_09_00_00`` stays itself. No ``%``, ``/``
    or ``..`` results, so no storage backend reads a segment as anything but a name.
    """
    if text in (".", ".."):  # a name, not this folder or its parent
        return f"{ESCAPE}2E" * len(text)
    return "".join(
        ch if ch in SAFE else "".join(f"{ESCAPE}{byte:02X}" for byte in ch.encode("utf-8"))
        for ch in text
    )


def storage_root(url: str | None, conn_id: str | None) -> Any:
    """The reports root (see :func:`root_url`) as an ObjectStoragePath."""
    return ObjectStoragePath(root_url(url), conn_id=conn_id or None)


def report_paths(root: Any, dag_id: str, run_id: str, group_id: str, phase: str) -> dict[str, Any]:
    """The HTML and CSV paths of one report under the storage root (ObjectStoragePath)."""
    folder = root / safe_part(dag_id) / safe_part(run_id) / safe_part(group_id)
    return {"html": folder / f"{phase}.html", "csv": folder / f"{phase}.csv"}


def stored_report(task: Any, run_id: str, kind: str, group: str | None = None) -> Any:
    """Where a copy task (``account.initial_copy`` or ``account.delta_copy``, as serialized)
    stored its report of a run: the ``reports_url``/``reports_conn_id`` it was parsed with
    (else this process's default root), the DAG, run and account's group ids and the phase.
    Nothing else goes in, so no caller can make this name another place or scheme.

    :param group: the account's group id (``Account.group_id``); by default the task's group
        (DAGs before mapped groups had one static group per account).
    """
    task_group, _, step = task.task_id.rpartition(".")
    group = group or task_group
    (phase,) = [phase for phase, name in PHASE_STEPS.items() if name == step]
    root = storage_root(getattr(task, "reports_url", None), getattr(task, "reports_conn_id", None))
    return report_paths(root, task.dag_id, run_id, group, phase)[kind]


def is_final_try(result: AccountResult, context: Context) -> bool:
    """Whether this try's outcome stands: success, refusals (never retried) or the last try.
    Errors and messages missing on the destination after the pass are retried (the copy task
    raises a retryable error for them), so they stand only on the last try."""
    if result.ok or not (result.error or any(f.error or f.missing for f in result.folders)):
        return True
    ti = context["ti"]
    return ti.try_number > ti.max_tries


def publish_owner_report(
    context: Context,
    plan: Plan,
    account: Account,
    source: Endpoint,
    destination: Endpoint,
    result: AccountResult,
    log: Any,
) -> dict[str, Any] | None:
    """Build, store, link and (if the plan says so) mail the report of one pass; push and return
    the ``owner_report`` XCom. Never raises: a report must not cost the copy its success."""
    if not plan.reports.enabled:
        return None
    try:
        report = _build(plan, account, source, destination, result, log)
    except Exception as exc:  # a bug in the report must not fail the copy
        log.warning("%s: no owner report: %s: %s", account.source_user, type(exc).__name__, exc)
        return None
    html, csv_text = render_html(report), render_csv(report)
    record: dict[str, Any] = {"summary": report.to_dict(), "conn_id": plan.reports.conn_id}
    try:
        root = storage_root(plan.reports.url, plan.reports.conn_id)
        ti = context["ti"]
        paths = report_paths(root, ti.dag_id, ti.run_id, account.group_id, result.phase)
        paths["html"].parent.mkdir(parents=True, exist_ok=True)
        paths["html"].write_text(html, encoding="utf-8")
        paths["csv"].write_text(csv_text, encoding="utf-8")
        record.update({"html": str(paths["html"]), "csv": str(paths["csv"])})
        log.info(
            "Owner report: %s (CSV: %s)",
            report_url(ti.dag_id, ti.run_id, ti.task_id, map_index=ti.map_index),
            report_url(ti.dag_id, ti.run_id, ti.task_id, "csv", map_index=ti.map_index),
        )
    except Exception as exc:
        record["storage_error"] = f"{type(exc).__name__}: {exc}"
        log.warning("%s: the owner report could not be stored: %s", account.source_user, exc)
    mail = plan.reports.mail_owners
    step = PHASE_STEPS.get(result.phase, result.phase)
    if mail and step in mail.after and is_final_try(result, context):
        record.update(_mail_owner(plan, account, report, html, csv_text, step, log))
    context["ti"].xcom_push(key=XCOM_KEY, value=record)
    return record


def _build(
    plan: Plan,
    account: Account,
    source: Endpoint,
    destination: Endpoint,
    result: AccountResult,
    log: Any,
) -> OwnerReport:
    comparison, why = None, None
    if plan.reports.compare:
        # Imported when a report compares: mailmigrate.report (and the sync engine it uses)
        # would add 15 ms to every DAG parse (measured), and most plans never compare.
        from mailmigrate.report import account_report

        try:
            comparison = account_report(plan, account, source, destination)
        except Exception as exc:  # a server gone after the copy: report what the copy knows
            why = f"comparing both sides failed: {exc}"
            log.warning("%s: %s", account.source_user, why)
    else:
        why = "reports.compare is off"
    return build_owner_report(
        plan.name,
        account,
        result,
        comparison,
        comparison_error=why,
        settings=plan.reports.client_settings,
        destination=destination,
    )


def owner_address(account: Account) -> str | None:
    """Where the owner reads mail: the destination address, else the source address."""
    for user in (account.destination_user, account.source_user):
        if "@" in user.strip("@"):
            return user
    return None


def _mail_owner(
    plan: Plan, account: Account, report: OwnerReport, html: str, csv_text: str, step: str, log
) -> dict[str, Any]:
    mail = plan.reports.mail_owners
    assert mail is not None
    to = owner_address(account)
    if to is None:
        log.warning("%s: no mail address to send the owner report to", account.source_user)
        return {"mail_error": "no mail address for this account"}
    variables = {
        "report": report,
        "report_html": Markup(render_html(report, standalone=False)),
        "step": step,
        "plan": plan.name,
        "account": account,
    }
    try:
        subject, body = render_mail(["owner_report"], variables, plan.reports.templates)
        stem = f"mailbox-report-{safe_part(report.phase)}"
        send_mail(
            conn_id=mail.smtp_connection,
            to=to,
            subject=subject,
            html=body,
            sender=mail.sender,
            attachments={f"{stem}.html": html, f"{stem}.csv": csv_text},
        )
    except Exception as exc:
        log.warning("%s: mailing the owner report to %s failed: %s", account.source_user, to, exc)
        return {"mail_error": f"{type(exc).__name__}: {exc}", "mail_to": to}
    log.info("Owner report mailed to %s", to)
    return {"mailed_to": to}


class OwnerReportLink(BaseOperatorLink):
    """The task's "Owner report" button: the report through the status page's app."""

    name = "Owner report"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        return report_url(ti_key.dag_id, ti_key.run_id, ti_key.task_id, map_index=ti_key.map_index)
