"""The tasks of the scheduled after-hours deltas, DAG ``migration_<name>_deltas``
(built by :func:`mailmigrate_airflow.factory.build_deltas_dag`)::

    select >> delta (mapped: one task instance per account due, named after it) >> wrap_up

The main DAG ``migration_<name>`` hands accounts over through each account's delta record
(:mod:`mailmigrate.quiet`, in the state directory every worker shares): ``initial_copy`` notes a
verified initial copy, ``delta_copy`` the MX release (when ``wait_for_mx`` saw it propagate) and,
once its pass is verified, the handover. Each scheduled run then:

* ``select`` reads the records and returns the accounts due: handed over and not done (and, with
  ``delta.before_mx``, those with an initial copy whose MX change has not been seen yet);
* ``delta`` runs one delta pass per account (retries and logs as every copy), notes what it
  found and, when the account has gone quiet or reached the maximum, sends ``account_finished``;
* ``wrap_up`` sends ``migration_finished`` once, when every account of the plan is done.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowSkipException

from mailmigrate import quiet
from mailmigrate_airflow.notifiers import send_event
from mailmigrate_airflow.operators import MailboxCopyOperator, PlanOperator, passed

if TYPE_CHECKING:
    from airflow.sdk import Context

    from mailmigrate.plan import Plan


class SelectDeltasOperator(PlanOperator):
    """``select``: the source users due for a delta in this run (the XCom ``delta`` maps
    over); logs how many are due, done and not handed over yet.

    :param plan: the plan file, relative to the plans directory.
    :param state_dir: the plan's state directory as the DAG was parsed (serialized, so the
        status page finds the records; the tasks resolve it again from the plan).
    """

    template_fields = ("state_dir",)

    def __init__(self, *, plan: str, state_dir: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.plan = plan
        self.state_dir = state_dir

    def execute(self, context: Context) -> list[str]:
        plan = self.load_plan(context)
        users = [account.source_user for account in plan.accounts]
        records = quiet.load_all(quiet.state_dir_of(plan), plan.name, users)
        kinds = {user: quiet.due(r, before_mx=plan.delta.before_mx) for user, r in records.items()}
        due = [user for user in users if kinds[user]]
        done = sum(record.done for record in records.values())
        after = sum(kind == "after_mx" for kind in kinds.values())
        self.log.info(
            "%d of %d accounts due for a delta (%d after the MX change, %d before it); %d done; "
            "%d not handed over by %s yet",
            len(due), len(users), after, len(due) - after, done, len(users) - len(due) - done,
            plan.dag_id,
        )  # fmt: skip
        return due


class ScheduledDeltaOperator(MailboxCopyOperator):
    """``delta``: one scheduled delta pass over one account (mapped over ``select``'s list),
    noted in the account's record; sends ``account_finished`` when that made it done.

    Skips when the account is no longer due (done since ``select``) or another pass over it is
    running (the main DAG's): the next run repeats it.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(phase="delta", **kwargs)

    def pre_execute(self, context: Context) -> None:
        BaseOperator.pre_execute(self, context)  # not a step of an account group: never gated

    def execute(self, context: Context) -> dict[str, Any]:
        plan, account, source, destination = self.prepare(context)
        directory, user = quiet.state_dir_of(plan), account.source_user
        record = quiet.load(directory, plan.name, user)
        if quiet.due(record, before_mx=plan.delta.before_mx) is None:
            self.announce(context, plan, record)
            raise AirflowSkipException(f"{user}: not due (done, or not handed over)")
        try:
            with quiet.exclusive_pass(directory, plan.name, user, wait=False):
                summary = self.run_pass(context, plan, account, source, destination, self.note)
        except quiet.AccountBusy as exc:
            raise AirflowSkipException(f"{exc}; the next scheduled run repeats it") from None
        self.announce(context, plan, quiet.load(directory, plan.name, user))
        return summary

    def note(
        self, context: Context, plan: Plan, started: dt.datetime, result: Any
    ) -> dict[str, Any]:
        """Note the pass in the record and decide (:func:`mailmigrate.quiet.after_pass`);
        returns the record for the summary."""
        ended = quiet.utcnow()
        outcome: list[quiet.Outcome] = []

        def decide(record: quiet.DeltaRecord) -> None:
            outcome.append(quiet.after_pass(
                record, started=started, ended=ended, copied=result.totals()["copied"],
                ok=passed(result), quiet_period=plan.delta.quiet_period,
                max_after_mx=plan.delta.max_after_mx,
            ))  # fmt: skip

        record = quiet.update(quiet.state_dir_of(plan), plan.name, self.source_user, decide)
        if outcome[0].warning:
            self.log.warning("%s", outcome[0].warning)
        self.log.info("%s: %s", self.source_user, describe(record))
        return {"quiet": record.to_dict()}

    def announce(self, context: Context, plan: Plan, record: quiet.DeltaRecord) -> None:
        """Send ``account_finished`` for a done account not announced yet (so a try after a
        notifier failed sends it again)."""
        if not record.done or record.notified_at is not None:
            return
        facts = quiet.account_finished_facts(plan.name, record)
        self.log.info("%s", facts["message"])
        send_event(plan, context, "account_finished", facts, self.log)
        quiet.update(quiet.state_dir_of(plan), plan.name, record.account,
                     lambda rec: setattr(rec, "notified_at", quiet.utcnow()))  # fmt: skip


class DeltasWrapUpOperator(PlanOperator):
    """``wrap_up``: counts done accounts; sends ``migration_finished`` once, when all are.

    :param plan: the plan file, relative to the plans directory.
    """

    def __init__(self, *, plan: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.plan = plan

    def execute(self, context: Context) -> dict[str, Any]:
        plan = self.load_plan(context)
        directory = quiet.state_dir_of(plan)
        users = [account.source_user for account in plan.accounts]
        records = quiet.load_all(directory, plan.name, users)
        done = [record for record in records.values() if record.done]
        self.log.info("%d of %d accounts done", len(done), len(users))
        if quiet.migration_notice_due(directory, plan.name, users):
            facts = quiet.migration_finished_facts(plan.name, records.values())
            self.log.info("%s", facts["message"])
            send_event(plan, context, "migration_finished", facts, self.log)
            quiet.note_migration_notice(directory, plan.name, quiet.utcnow())
        return {"accounts": len(users), "done": len(done),
                "at_maximum": sum(r.done_reason == quiet.MAXIMUM for r in done)}  # fmt: skip


def describe(record: quiet.DeltaRecord) -> str:
    """One line: done (why, when) or quiet since when."""
    if record.done:
        return f"done ({record.done_reason}) at {record.done_at:%Y-%m-%d %H:%M:%S %Z}"
    since = record.quiet_since
    return "no new mail since " + (f"{since:%Y-%m-%d %H:%M:%S %Z}" if since else "(not released)")
