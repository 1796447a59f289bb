"""The optional approval step: the owners of a few pilot accounts review the test migration,
then a human approves (or rejects) the full run in Airflow's Required Actions.

With ``approval: {accounts: [...], after: initial_copy}`` in the plan, the DAG gets one more
task, ``approve_full_run`` (the standard provider's human-in-the-loop
:class:`~airflow.providers.standard.operators.hitl.ApprovalOperator`)::

    pilot.<after> (every pilot)  ──>  approve_full_run  ──>  account.initial_copy (every other)
                                                    └──>  cutover_ready

The pilots run their steps in their own mapped group, ``pilot`` (listed by ``pilot_accounts``); every other account is tested at once but copies only after
"Approve". "Reject" skips the other accounts' copies and the cutover announcement. A run that
selects only pilot accounts, or stops after ``test``, has nothing to approve: the task skips.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import TriggerRule
from airflow.sdk.exceptions import AirflowSkipException

from mailmigrate_airflow.notifiers import send_event, wants
from mailmigrate_airflow.reports import XCOM_KEY
from mailmigrate_airflow.runs import (
    ACCOUNT_GROUP,
    PILOT_GROUP,
    SELECT_TASKS,
    load_plan,
    report_url,
    runs_step,
    selected_accounts,
)

if TYPE_CHECKING:
    from airflow.sdk import DAG, BaseOperator, Context

    from mailmigrate.plan import Plan

TASK_ID = "approve_full_run"


class MigrationApprovalOperator(ApprovalOperator):
    """``approve_full_run``: wait for a human's "Approve" before the non-pilot accounts copy.

    The body it shows lists each pilot's result of ``after`` with a link to its owner report.

    :param plan: the plan file, relative to the plans directory.
    :param pilots: the pilot accounts' source users.
    :param after: the pilots' step the approval follows (``test`` or ``initial_copy``).
    """

    ui_color = "#fff3cd"

    def __init__(self, *, plan: str, pilots: list[str], after: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.plan = plan
        self.pilots = list(pilots)
        self.after = after

    def execute(self, context: Context) -> Any:
        plan = load_plan(context, self.plan)
        params = context.get("params")
        if not runs_step(params, "initial_copy"):
            raise AirflowSkipException("this run stops after test: no copy to approve")
        everyone = [account.source_user for account in plan.accounts]
        selected = selected_accounts(params) or everyone
        gated = [user for user in selected if user in everyone and user not in self.pilots]
        if not gated:
            raise AirflowSkipException(
                "only pilot accounts run in this run: there is no full run to approve"
            )
        pilots = self._pilot_results(plan, context)
        self.body = approval_body(self.body, pilots, len(gated), self.after)
        self._announce(plan, context, pilots, len(gated))
        return super().execute(context)

    def _pilot_results(self, plan: Plan, context: Context) -> list[dict[str, Any]]:
        ti = context["ti"]
        task_id = f"{PILOT_GROUP}.{self.after}"
        rows = ti.xcom_pull(task_ids=SELECT_TASKS[PILOT_GROUP]) or []
        results = []
        for map_index, row in enumerate(rows):  # map index i is the pilot of row i
            user = row["source_user"]
            summary = ti.xcom_pull(task_ids=task_id, map_indexes=map_index) or {}
            report = None
            if self.after != "test":
                report = ti.xcom_pull(task_ids=task_id, key=XCOM_KEY, map_indexes=map_index)
            url = report_url(ti.dag_id, ti.run_id, task_id, map_index=map_index) if report else ""
            results.append(
                {
                    "account": user,
                    "ok": summary.get("ok"),
                    "copied": (summary.get("totals") or {}).get("copied"),
                    "problems": summary.get("problems") or [],
                    "error": summary.get("error"),
                    "report": url,
                }
            )
        return results

    def _announce(self, plan: Plan, context: Context, pilots: list[dict], gated: int) -> None:
        if not wants(plan, "approval_requested"):
            return
        subject = (
            f"{plan.name}: the pilot accounts are done; approve the full run of {gated} accounts"
        )
        lines = [subject + ".", ""] + [_pilot_line(p) for p in pilots]
        try:
            url = self.generate_link_to_ui_from_context(context=context)
        except ValueError:  # no [api] base_url: no absolute link
            url = ""
        facts = {"subject": subject, "message": "\n".join(lines), "pilots": pilots,
                 "after": self.after, "url": url}  # fmt: skip
        try:
            send_event(plan, context, "approval_requested", facts, self.log)
        except Exception as exc:  # the approval itself must still be asked
            self.log.warning("Announcing the approval failed: %s", exc)


def _pilot_line(pilot: dict[str, Any]) -> str:
    state = "ok" if pilot["ok"] else "NOT OK"
    detail = []
    if pilot["copied"] is not None:
        detail.append(f"{pilot['copied']} messages copied")
    detail += pilot["problems"]
    if pilot["error"]:
        detail.append(pilot["error"])
    return f"- {pilot['account']}: {state}" + (f" ({'; '.join(detail)})" if detail else "")


def approval_body(intro: str | None, pilots: list[dict[str, Any]], gated: int, after: str) -> str:
    """The Markdown the approver reads: the intro, each pilot's result and report, the stakes."""
    lines = [intro or "The owners of the pilot accounts have reviewed their mailboxes.", ""]
    lines.append(f"Pilot accounts after **{after}**:")
    lines.append("")
    for pilot in pilots:
        line = _pilot_line(pilot)
        if pilot["report"]:
            line += f" - [owner report]({pilot['report']})"
        lines.append(line)
    lines += ["", f"**Approve** copies the other {gated} accounts; **Reject** skips them and the "
              "cutover announcement."]  # fmt: skip
    return "\n".join(lines)


def add_approval(
    plan: Plan, plan_file: str, dag: DAG, cutover: BaseOperator
) -> BaseOperator | None:
    """Add ``approve_full_run`` to a DAG being built (inside its ``with DAG`` block)."""
    approval = plan.approval
    if approval is None:
        return None
    task = MigrationApprovalOperator(
        task_id=TASK_ID,
        plan=plan_file,
        pilots=list(approval.accounts),
        after=approval.after,
        subject=approval.subject
        or f"{plan.name}: approve the full migration after the pilot accounts' {approval.after}",
        body=approval.body,
        assigned_users=[{"id": user, "name": user} for user in approval.approvers] or None,
        response_timeout=dt.timedelta(seconds=approval.timeout) if approval.timeout else None,
        # Skipped pilots (a run without them) do not block it; a failed pilot does.
        trigger_rule=TriggerRule.NONE_FAILED,
    )
    # The pilots run in the mapped group ``pilot``, every other account in ``account``: the
    # approval waits for every pilot's ``after`` step and gates every other initial copy.
    dag.get_task(f"{PILOT_GROUP}.{approval.after}") >> task
    task >> dag.get_task(f"{ACCOUNT_GROUP}.initial_copy")
    task >> cutover
    return task
