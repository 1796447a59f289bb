"""The migration's events and the plan's notifiers.

Events (``on`` of a ``notify`` entry; ``cutover_ready`` when not given):

* ``cutover_ready``: every initial copy is done, the MX record can be changed now (the
  ``cutover_ready`` task; it always logs the announcement too).
* ``task_failed``: a task failed after its last retry (``on_failure_callback`` of every task).
* ``finished``: the DAG run ended, successfully or not (the DAG's success/failure callbacks).
* ``approval_requested``: the approval task waits for a human (see :mod:`.approval`).
* ``account_finished``: the scheduled deltas found an account's old mailbox quiet, or reached
  the maximum time after the MX change (see :mod:`.deltas`).
* ``migration_finished``: every account of the plan is finished (sent once).

Each entry of the plan's ``notify`` list names any Airflow notifier
(:class:`airflow.sdk.BaseNotifier`) with its arguments, e.g. the SMTP or Slack provider's, or
:class:`MigrationMailNotifier` for mails from editable templates::

    notify:
      - notifier: mailmigrate_airflow.notifiers.MigrationMailNotifier
        on: [cutover_ready, task_failed, finished, approval_requested]
        args: {to: ops@example.com, smtp_conn_id: smtp_default}
      - notifier: airflow.providers.smtp.notifications.smtp.SmtpNotifier
        args: {to: ops@example.com, subject: "{{ event.subject }}", html_content: "{{ event.message }}"}

The args are templated with the Airflow context plus ``event`` (see :func:`migration_event`)
and, for ``cutover_ready``, ``cutover`` (:func:`cutover_announcement`). Secrets belong in the
notifier's connection, not in the plan.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseNotifier
from airflow.sdk.exceptions import AirflowFailException

from mailmigrate_airflow.mail import render_mail, send_mail
from mailmigrate_airflow.runs import base_url, load_plan, status_url

if TYPE_CHECKING:
    from airflow.sdk import Context

    from mailmigrate.plan import Plan

log = logging.getLogger(__name__)


def cutover_announcement(plan: Plan, domains: Iterable[str]) -> dict[str, Any]:
    """What cutover_ready says: ``subject``, ``message`` and the facts behind them.

    :param domains: the accounts' MX domains.
    """
    domain_list = sorted(set(domains))
    count = len(plan.accounts)
    subject = f"{plan.name}: all {count} initial copies done, change the MX record now"
    lines = [subject + "."]
    if plan.mx:
        expect = ", ".join(plan.mx.expect)
        lines.append(f"Point the MX records of {', '.join(domain_list)} to {expect}.")
        lines.append("wait_for_mx watches DNS; the delta copies follow in the delta window.")
    else:
        lines.append(f"Change the MX records of {', '.join(domain_list)} to the new servers.")
        lines.append("The plan has no mx section: the delta copies do not wait for DNS.")
    return {
        "plan": plan.name,
        "accounts": count,
        "domains": domain_list,
        "mx_expect": list(plan.mx.expect) if plan.mx else [],
        "subject": subject,
        "message": "\n".join(lines),
    }


def migration_event(
    plan: Plan, context: Context, kind: str, facts: dict[str, Any]
) -> dict[str, Any]:
    """The ``event`` notifiers are templated with: ``kind``, ``subject``, ``message`` (plain
    text), ``plan``, ``dag_id``, ``run_id``, ``status_url``, ``templates`` (the plan's template
    folder or ``None``) and ``facts`` (the kind's details; ``subject``/``message`` inside win)."""
    run_id = context.get("run_id") or getattr(context.get("dag_run"), "run_id", None) or ""
    subject = facts.get("subject") or f"{plan.name}: {kind.replace('_', ' ')}"
    return {
        "kind": kind,
        "subject": subject,
        "message": facts.get("message") or subject,
        "plan": plan.name,
        "dag_id": plan.dag_id,
        "run_id": run_id,
        "status_url": status_url(plan.dag_id, run_id or None),
        "templates": str(plan.reports.templates) if plan.reports.templates else None,
        "facts": facts,
    }


def send_event(
    plan: Plan, context: Context, kind: str, facts: dict[str, Any], log: logging.Logger | Any = log
) -> int:
    """Send an event through every notifier of the plan whose ``on`` lists it.

    Every notifier is tried; then the first problem is raised (a notifier that cannot be set up
    as :class:`AirflowFailException` naming its plan line). Returns how many were sent.
    """
    from airflow.sdk.module_loading import import_string

    event = migration_event(plan, context, kind, facts)
    extra: dict[str, Any] = {"event": event}
    if kind == "cutover_ready":
        extra["cutover"] = facts
    sent, problems = 0, []
    for spec in plan.notify:
        if kind not in spec.on:
            continue
        where = f"{plan.path}:{spec.line}: notify: {spec.notifier}"
        try:
            notifier = import_string(spec.notifier)(**spec.args)
        except Exception as exc:
            problems.append(AirflowFailException(f"{where}: cannot set it up: {exc}"))
            continue
        if not isinstance(notifier, BaseNotifier):
            problems.append(AirflowFailException(f"{where}: is not an Airflow notifier (BaseNotifier)"))  # fmt: skip
            continue
        log.info("Notifying %s through %s", kind, spec.notifier)
        try:
            _call(notifier, {**context, **extra})
            sent += 1
        except Exception as exc:
            log.error("%s: sending %s failed: %s", where, kind, exc)
            problems.append(exc)
    if problems:
        raise problems[0]
    return sent


def _call(notifier: BaseNotifier, context: dict[str, Any]) -> None:
    """``notifier(context)``; with a plain Jinja environment when the context's DAG has none
    (``dag.test()`` hands DAG callbacks the scheduler's form of the DAG)."""
    if hasattr(context.get("dag"), "get_template_env"):
        notifier(context)
        return
    from jinja2.sandbox import SandboxedEnvironment

    notifier._update_context(context)  # type: ignore[arg-type]
    notifier.render_template_fields(context, jinja_env=SandboxedEnvironment(cache_size=0))  # type: ignore[arg-type]
    notifier.notify(context)  # type: ignore[arg-type]


def notify_cutover(
    plan: Plan, context: Context, cutover: dict[str, Any], log: logging.Logger | Any
) -> None:
    """Send the cutover announcement through the plan's notifiers for ``cutover_ready``."""
    send_event(plan, context, "cutover_ready", cutover, log)


def wants(plan: Plan, kind: str) -> bool:
    """Whether any notifier of the plan listens to ``kind``."""
    return any(kind in spec.on for spec in plan.notify)


class PlanEventNotifier(BaseNotifier):
    """A callback that sends ``task_failed`` or ``finished`` through the plan's notifiers.

    The factory sets it as every task's ``on_failure_callback`` (called after the last retry
    only) and as the DAG's success and failure callbacks, when the plan's ``notify`` asks for
    these events. It loads the plan when called, so the DAG carries only the plan's file name.

    :param plan: the plan file, relative to the plans directory.
    :param event: ``task_failed`` or ``finished``.
    """

    def __init__(self, *, plan: str, event: str) -> None:
        super().__init__()
        if event not in ("task_failed", "finished"):
            raise ValueError(f"event must be task_failed or finished, not {event!r}")
        self.plan = plan
        self.event = event

    def render_template_fields(self, context: Context, jinja_env: Any = None) -> None:
        """Nothing to render here (the plan's notifiers render their own arguments); and a DAG
        callback under ``dag.test()`` gets a DAG without a template environment."""

    def notify(self, context: Context) -> None:
        plan = load_plan(context, self.plan)
        facts = (
            failure_facts(context) if self.event == "task_failed" else finish_facts(plan, context)
        )
        send_event(plan, context, self.event, facts, self.log)


def failure_facts(context: Context) -> dict[str, Any]:
    """What failed: the account (the task's ``source_user``), the step, the error and the log."""
    ti = context.get("ti")
    task = context.get("task") or getattr(ti, "task", None)
    task_id = getattr(ti, "task_id", None) or getattr(task, "task_id", "?")
    account = getattr(task, "source_user", None)  # rendered: the mapped instance's account
    if not isinstance(account, str):
        group = getattr(task, "task_group", None)
        account = getattr(group, "group_display_name", "") or task_id.rpartition(".")[0]
    step = task_id.rpartition(".")[2]
    error = context.get("exception")
    error_text = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else str(error or "")  # fmt: skip
    try_number = getattr(ti, "try_number", None)
    who = f"{account}: " if account else ""
    subject = f"{who}{step} failed" + (f" after {try_number} tries" if try_number and try_number > 1 else "")  # fmt: skip
    log_url = ""
    if base_url() and ti is not None:
        try:
            log_url = ti.log_url
        except Exception:
            log_url = ""
    message = f"{subject}.\n{error_text}" if error_text else subject + "."
    return {
        "subject": subject,
        "message": message,
        "account": account,
        "step": step,
        "task_id": task_id,
        "try_number": try_number,
        "error": error_text,
        "log_url": log_url,
    }


def finish_facts(plan: Plan, context: Context) -> dict[str, Any]:
    """How the run ended: ``state`` (success or failed) and Airflow's ``reason``."""
    reason = str(context.get("reason") or "")
    dag_run = context.get("dag_run")
    state = str(getattr(dag_run, "state", "") or "")
    if state not in ("success", "failed"):
        state = "success" if reason == "success" else "failed"
    if state == "success":
        subject = f"{plan.name}: migration run finished, every selected task succeeded"
    else:
        subject = f"{plan.name}: migration run finished with failures"
    lines = [subject + "."]
    if reason and reason != "success":
        lines.append(f"Reason: {reason}.")
    lines.append("The status page lists every account's result.")
    return {"subject": subject, "message": "\n".join(lines), "state": state, "reason": reason}


class MigrationMailNotifier(BaseNotifier):
    """Mail an event to ops from editable templates (``ops_<kind>.*.j2``, else ``ops_event.*.j2``;
    the plan's ``reports.templates`` folder wins over the shipped templates).

    :param to: recipient address or list of addresses. (templated)
    :param smtp_conn_id: the Airflow SMTP connection.
    :param from_email: the From address; default: the connection's ``from_email``. (templated)
    """

    template_fields = ("to", "from_email")

    def __init__(
        self,
        *,
        to: str | list[str],
        smtp_conn_id: str = "smtp_default",
        from_email: str | None = None,
    ) -> None:
        super().__init__()
        self.to = to
        self.smtp_conn_id = smtp_conn_id
        self.from_email = from_email

    def notify(self, context: Context) -> None:
        event = context.get("event")
        if not isinstance(event, dict):
            raise ValueError("MigrationMailNotifier sends mailmigrate events; the context has none")
        variables = {**context, "event": event}
        subject, html = render_mail(
            [f"ops_{event['kind']}", "ops_event"], variables, event.get("templates")
        )
        send_mail(
            conn_id=self.smtp_conn_id,
            to=self.to,
            subject=subject,
            html=html,
            sender=self.from_email,
        )


def event_callbacks(
    plan: Plan, plan_file: str, events: tuple[str, ...] = ("task_failed", "finished")
) -> dict[str, Any]:
    """The DAG's keyword arguments for the plan's ``task_failed`` and ``finished`` notifiers:
    every task's ``on_failure_callback`` (through ``default_args``) and the DAG's own success
    and failure callbacks; nothing when no notifier listens to them.

    :param events: the ones this DAG sends (the scheduled deltas: ``task_failed`` only, a
        ``finished`` every night would say nothing).
    """
    kwargs: dict[str, Any] = {}
    if "task_failed" in events and wants(plan, "task_failed"):
        kwargs["default_args"] = {
            "on_failure_callback": [PlanEventNotifier(plan=plan_file, event="task_failed")]
        }
    if "finished" in events and wants(plan, "finished"):
        finished = PlanEventNotifier(plan=plan_file, event="finished")
        kwargs["on_success_callback"] = [finished]
        kwargs["on_failure_callback"] = [finished]
    return kwargs
