"""Operators that run the engine's steps for one account of a plan.

Operators hold references only: the plan file (relative to the plans directory), the account's
source user and the connection ids. They load the plan when they run
(:func:`mailmigrate_airflow.runs.load_plan`: every password of its accounts masked at once), get
both endpoints from the connections, call :mod:`mailmigrate.sync` (imported only then, so that
parsing the DAGs stays cheap) and return a small JSON summary as their XCom.

Errors: the engine's are mapped to fail or retry in one place,
:func:`mailmigrate_airflow.runs.engine_errors`: refused credentials, a malformed connection and
an invalid plan fail the task without retries (retrying cannot help), as do a missing connection
and a failed preflight; a retryable :class:`~mailmigrate.errors.MailboxError` (disconnects,
timeouts, throttling) fails the try and lets Airflow retry with back-off.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.sdk import BaseOperator, SkipMixin
from airflow.sdk.bases.skipmixin import XCOM_SKIPMIXIN_KEY, XCOM_SKIPMIXIN_SKIPPED
from airflow.sdk.configuration import conf
from airflow.sdk.exceptions import (
    AirflowException,
    AirflowFailException,
    AirflowNotFoundException,
    AirflowSkipException,
)

from mailmigrate import quiet
from mailmigrate_airflow.groupware import copy_groupware, test_groupware
from mailmigrate_airflow.hooks import get_endpoint
from mailmigrate_airflow.notifiers import cutover_announcement, notify_cutover
from mailmigrate_airflow.reports import OwnerReportLink, publish_owner_report
from mailmigrate_airflow.runs import (
    ACCOUNT_GROUP,
    PILOT_GROUP,
    STEPS,
    STOP_POINTS,
    check_selected,
    engine_errors,
    load_plan,
    run_engine,
    runs_step,
    selected_accounts,
    stop_point,
)
from mailmigrate_airflow.sensors import DeltaWindowSensor, MxPropagationSensor

if TYPE_CHECKING:
    from airflow.sdk import Context

    from mailmigrate.plan import Account, Plan

XCOM_LIMIT = 64 * 1024  # bytes of JSON; an XCom summary is counts and watermarks, never messages


class AccountStep:
    """Mixin of the five tasks of the mapped ``account`` group: before running, skip the task
    when its account is not selected or its step lies beyond the run's stop point.

    The account is the task's ``source_user`` (the group's mapped argument, rendered before the
    task runs), the step the last part of its task id, so every kind of task (operators and
    sensors alike) is gated the same way. The first step after the stop point is started only to
    skip itself (the scheduler creates an account's instance of a step only once the step
    before it is done, so nothing can skip it earlier); the scheduler skips the steps after it.
    """

    task_id: str
    source_user: str

    @property
    def step(self) -> str:
        """The step, from the task id ``<group>.<step>``."""
        return self.task_id.rpartition(".")[2]

    def pre_execute(self, context: Context) -> None:
        check_selected(context, self.source_user, self.step)
        super().pre_execute(context)  # type: ignore[misc]


def _engine() -> ModuleType:
    """:mod:`mailmigrate.sync`, imported when a task runs, not when the DAG file is parsed
    (measured: 15 ms of every parse of every plan's DAG, on top of Airflow's own imports)."""
    from mailmigrate import sync

    return sync


# Only the concrete operators define __init__: Airflow wraps every __init__ of the class
# hierarchy (default_args, params), and a DAG of 200 accounts creates 600 of these operators.


class PlanOperator(BaseOperator):
    """Base of the operators that read a plan when they run (attribute ``plan``: the plan file,
    relative to the plans directory)."""

    ui_color = "#e8f0fe"
    plan: str

    def load_plan(self, context: Context) -> Plan:
        """The plan of this task (:func:`mailmigrate_airflow.runs.load_plan`)."""
        return load_plan(context, self.plan)


class AccountOperator(AccountStep, PlanOperator):
    """Base of the operators that work on one account with both connections."""

    template_fields = ("source_user", "source_conn_id", "destination_conn_id")
    source_user: str
    source_conn_id: str
    destination_conn_id: str

    def _refer(self, plan: str, source_user: str, source_conn_id: str, destination_conn_id: str):
        self.plan = plan
        self.source_user = source_user
        self.source_conn_id = source_conn_id
        self.destination_conn_id = destination_conn_id

    def prepare(self, context: Context) -> tuple[Plan, Account, Any, Any]:
        """The plan, this account and both endpoints."""
        plan = self.load_plan(context)
        try:
            account = plan.account(self.source_user)
        except KeyError:
            raise AirflowFailException(
                f"{plan.path}: no account {self.source_user!r} any more; re-parse the DAG"
            ) from None
        endpoints = []
        for side, conn_id in (
            ("source", self.source_conn_id),
            ("destination", self.destination_conn_id),
        ):
            try:
                with engine_errors(side):
                    endpoints.append(get_endpoint(conn_id))
            except AirflowNotFoundException:
                raise AirflowFailException(
                    f"{side} connection {conn_id!r} does not exist; add it in Admin -> Connections"
                ) from None
        return plan, account, endpoints[0], endpoints[1]

    def run_engine(self, what: str, call: Callable[[], Any]) -> Any:
        """Call the engine; its errors become Airflow's fail/retry (:func:`runs.engine_errors`)."""
        return run_engine(f"{self.source_user}: {what}", call)

    def report(self, result: Any) -> dict[str, Any]:
        """Log the result's summary lines and return its small dict (the XCom)."""
        for line in result.summary_lines():
            self.log.info("%s", line)
        return small_summary(result.to_dict())

    @staticmethod
    def fail_with(context: Context, summary: dict[str, Any], error: AirflowException) -> NoReturn:
        """Keep the summary as the XCom of a failed try too, then raise ``error``."""
        context["ti"].xcom_push(key="return_value", value=summary)
        raise error


class MailboxTestOperator(AccountOperator):
    """The ``test`` step: log in on both sides, compare capabilities, sizes and quota, show the
    folder mapping. Fails (without retry) when the account cannot be migrated as it is.

    :param plan: the plan file, relative to the plans directory (e.g. ``acme.yaml``).
    :param source_user: the account, by its source user (as in the accounts CSV).
    :param source_conn_id: the source server's connection (imap or ews).
    :param destination_conn_id: the destination server's connection (imap or ews).
    """

    def __init__(
        self,
        *,
        plan: str,
        source_user: str,
        source_conn_id: str,
        destination_conn_id: str,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._refer(plan, source_user, source_conn_id, destination_conn_id)

    def execute(self, context: Context) -> dict[str, Any]:
        sync = _engine()
        plan, account, source, destination = self.prepare(context)
        result = self.run_engine(
            "preflight", lambda: sync.preflight(plan, account, source, destination)
        )
        summary = self.report(result)
        groupware = self.run_engine(
            "groupware test", lambda: test_groupware(plan, account, self.log)
        )
        if groupware is not None:
            summary["groupware"] = groupware
        if not result.ok:
            problems = "; ".join(summary.get("problems") or []) or "see the log"
            message = f"{self.source_user} cannot be migrated: {problems}"
            self.fail_with(context, summary, AirflowFailException(message))
        return summary


class MailboxCopyOperator(AccountOperator):
    """The ``initial_copy`` / ``delta_copy`` steps: one pass of the engine over one account.

    :param phase: ``initial`` or ``delta``.
    :param plan: the plan file, relative to the plans directory (e.g. ``acme.yaml``).
    :param source_user: the account, by its source user (as in the accounts CSV).
    :param source_conn_id: the source server's connection (imap or ews).
    :param destination_conn_id: the destination server's connection (imap or ews).
    :param reports_url: the plan's ``reports.url`` (None: the default root) and
    :param reports_conn_id: its ``reports.conn_id``, as the DAG was parsed: serialized, so the
        status page reads owner reports from there and never from a location an XCom names.
    """

    operator_extra_links = (OwnerReportLink(),)
    template_fields = (*AccountOperator.template_fields, "reports_url", "reports_conn_id")

    def __init__(
        self,
        *,
        phase: str,
        plan: str,
        source_user: str,
        source_conn_id: str,
        destination_conn_id: str,
        reports_url: str | None = None,
        reports_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        if phase not in ("initial", "delta"):
            raise ValueError(f"phase must be initial or delta, not {phase!r}")
        super().__init__(**kwargs)
        self.phase = phase
        self.reports_url = reports_url
        self.reports_conn_id = reports_conn_id
        self._refer(plan, source_user, source_conn_id, destination_conn_id)

    def execute(self, context: Context) -> dict[str, Any]:
        plan, account, source, destination = self.prepare(context)
        # One pass over an account at a time: a scheduled delta (migration_<name>_deltas) may
        # be copying this account right now; this pass waits for it.
        with quiet.exclusive_pass(quiet.state_dir_of(plan), plan.name, self.source_user, wait=True):
            return self.run_pass(context, plan, account, source, destination, self.hand_over)

    def run_pass(
        self,
        context: Context,
        plan: Plan,
        account: Account,
        source: Any,
        destination: Any,
        note: Callable[[Context, Plan, dt.datetime, Any], dict[str, Any] | None],
    ) -> dict[str, Any]:
        """One pass of the engine: ``note(context, plan, started, result)`` right after it
        (whatever its outcome; what it returns joins the summary), then its summary is logged,
        its owner report published, and the task fails unless the pass is ok."""
        sync = _engine()
        started = quiet.utcnow()

        def copy() -> Any:
            result = sync.copy_account(
                plan, account, source, destination, self.phase,
                progress=lambda text: self.log.info("%s", text),
            )  # fmt: skip
            # calendars, contacts, tasks: after the mail, in the same task (README: Groupware)
            result.groupware = copy_groupware(plan, account, self.phase, self.log)
            return result

        result = self.run_engine(f"{self.phase} copy", copy)
        extra = note(context, plan, started, result)
        totals = result.totals()
        self.log.info(  # the one line to read first; the details follow
            "%s: %s copy %s: %d copied, %d failed, %d messages on the source",
            self.source_user,
            self.phase,
            "done" if result.ok else "INCOMPLETE",
            totals["copied"],
            totals["failed"],
            totals["source_messages"],
        )
        summary = {**self.report(result), **(extra or {})}
        publish_owner_report(context, plan, account, source, destination, result, self.log)
        if result.ok and (result.groupware or {}).get("problem_count"):
            text = (
                f"{self.source_user}: {self.phase} copy: {result.groupware['problem_count']} "
                "calendar, contact or task items not copied as they are (see the groupware "
                "section of the log; the next pass tries them again)"
            )
            self.fail_with(context, summary, AirflowFailException(text))
        if result.ok:
            return summary
        # Folder-level or account-level errors, and messages missing on the destination after
        # the pass (their folder is compared again), may pass on a retry (the pass is
        # retry-safe); messages the destination refused (too big, over quota) will be refused
        # again.
        folder_errors = [f for f in summary.get("folders") or [] if f.get("error")]
        short = {
            f["source"]: f["missing"] for f in summary.get("folders") or [] if f.get("missing")
        }
        totals = summary.get("totals") or {}
        text = (
            f"{self.source_user}: {self.phase} copy incomplete: {totals.get('failed', 0)} messages "
            f"refused, {len(folder_errors)} folders failed"
            + "".join(f"; {n} messages missing on the destination in {f}" for f, n in short.items())
            + (f"; {summary['error']}" if summary.get("error") else "")
        )
        if summary.get("error") or folder_errors or short:
            self.fail_with(context, summary, AirflowException(text))
        refused = AirflowFailException(text + " (refusals are not retried; see the log)")
        self.fail_with(context, summary, refused)

    def hand_over(self, context: Context, plan: Plan, started: dt.datetime, result: Any) -> None:
        """Note the pass in the account's delta record (:mod:`mailmigrate.quiet`): a verified
        initial copy; for the delta, the MX release (when ``wait_for_mx`` saw the change
        propagate) and, once verified, that the scheduled deltas take the account over."""
        directory, ok = quiet.state_dir_of(plan), passed(result)
        if self.phase == "initial":
            if ok:
                quiet.update(directory, plan.name, self.source_user,
                             lambda record: _first(record, "initial_done_at", started))  # fmt: skip
            return None
        mx = context["ti"].xcom_pull(
            task_ids=f"{self.task_id.rpartition('.')[0]}.wait_for_mx",
            map_indexes=context["ti"].map_index,
        )
        released = _moment((mx or {}).get("propagated_at")) or started
        ended = quiet.utcnow()

        def note(record: quiet.DeltaRecord) -> None:
            _first(record, "released_at", min(released, started))
            copied = result.totals()["copied"]
            quiet.after_pass(record, started=started, ended=ended, copied=copied, ok=ok,
                             decide=False)  # fmt: skip
            if ok:
                _first(record, "handed_over_at", ended)

        quiet.update(directory, plan.name, self.source_user, note)
        return None


def passed(result: Any) -> bool:
    """A pass that copied everything, checked it on the destination, groupware included."""
    return bool(result.ok and not (getattr(result, "groupware", None) or {}).get("problem_count"))


def _first(record: quiet.DeltaRecord, field: str, moment: dt.datetime) -> None:
    if getattr(record, field) is None:
        setattr(record, field, moment)


def _moment(text: Any) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(str(text)) if text else None
    except ValueError:
        return None


class NoMxCheckOperator(AccountStep, BaseOperator):
    """``wait_for_mx`` of a plan without an ``mx`` section: nothing to wait for in DNS."""

    ui_color = "#f0f0f0"
    template_fields = ("source_user",)

    def __init__(self, *, source_user: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.source_user = source_user

    def execute(self, context: Context) -> None:
        self.log.info(
            "The plan has no mx section, so DNS is not checked: the delta copy runs in the next "
            "delta window whether or not the MX record has been changed."
        )


class CutoverReadyOperator(PlanOperator):
    """``cutover_ready``: every initial copy is done, the MX record can be changed now.

    Logs the announcement and sends it through the plan's notifiers (see
    :mod:`mailmigrate_airflow.notifiers`). A run over a subset of the accounts (a test
    migration) announces nothing: this task is skipped.

    :param plan: the plan file, relative to the plans directory (e.g. ``acme.yaml``).
    """

    ui_color = "#d4edda"

    def __init__(self, *, plan: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.plan = plan

    def execute(self, context: Context) -> dict[str, Any]:
        plan = self.load_plan(context)
        everyone = {account.source_user for account in plan.accounts}
        if reason := no_cutover(context.get("params"), everyone):
            raise AirflowSkipException(reason)
        cutover = cutover_announcement(plan, [mx_domain_of(a) for a in plan.accounts])
        for line in cutover["message"].splitlines():
            self.log.info("%s", line)
        notify_cutover(plan, context, cutover, self.log)
        return small_summary({k: v for k, v in cutover.items() if k != "message"})


def mx_domain_of(account: Account) -> str:
    """The domain whose MX decides where the account's mail goes."""
    return account.mx_domain or account.destination_user.rpartition("@")[2]


class WaitForMxSensor(AccountStep, MxPropagationSensor):
    """``wait_for_mx``: the MX propagation sensor, gated like the other account tasks.

    :param source_user: the account (the group's mapped argument), for the gate and the grid.
    """

    template_fields = ("source_user", *MxPropagationSensor.template_fields)

    def __init__(self, *, source_user: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.source_user = source_user


class WaitForDeltaWindowSensor(AccountStep, DeltaWindowSensor):
    """``wait_for_delta_window``: the delta window sensor, gated like the other account tasks.

    :param source_user: the account (the group's mapped argument), for the gate and the grid.
    """

    # Templated so that they are serialized: the status page shows when the window opens next.
    template_fields = ("source_user", "timezone", "window", "weekdays")

    def __init__(self, *, source_user: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.source_user = source_user


class SelectAccountsOperator(PlanOperator, SkipMixin):
    """``accounts`` (``pilot_accounts``): the accounts of this run, the map of one group.

    Returns one row per account, ``{"source_user", "domain", "destination_user"}`` (``domain``:
    its MX domain), in plan order:
    the trigger parameter ``accounts`` when given, else every account of the plan, and of those
    the approval pilots only (``pilots`` of a plan with an approval, ``pilot_group``) or all
    others. A test migration of three accounts thus creates three instances of each step, not
    one per account of the plan.

    It also skips, for the whole run, the group's first step after the run's ``stop`` point:
    it is a direct upstream of every step of the group, and the scheduler skips, before starting
    it, a task that such an upstream listed under Airflow's skip key (``NotPreviouslySkippedDep``). So a run
    that stops after ``test`` starts one process per account, not a second one for
    ``initial_copy`` to skip itself; the steps after it are skipped by their trigger rules.
    ``accounts`` skips ``cutover_ready`` the same way in a run that cannot end in a cutover
    (:func:`no_cutover`: a test migration of a few accounts, or one that stops after the test).

    :param plan: the plan file, relative to the plans directory.
    :param pilots: the plan's approval pilots (source users); empty without an approval.
    :param pilot_group: list the pilots (True) or every other account (False).
    """

    ui_color = "#f5f5f5"
    inherits_from_skipmixin = True  # as Airflow's ShortCircuitOperator declares it

    def __init__(
        self, *, plan: str, pilots: Sequence[str] = (), pilot_group: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.plan = plan
        self.pilots = list(pilots)
        self.pilot_group = pilot_group

    def execute(self, context: Context) -> list[dict[str, str]]:
        plan = self.load_plan(context)
        selected = selected_accounts(context.get("params"))
        everyone = {account.source_user for account in plan.accounts}
        unknown = [user for user in selected if user not in everyone]
        if unknown:
            raise AirflowFailException(
                f"accounts not in the plan {plan.path.name}: {', '.join(unknown)}"
            )
        chosen = set(selected or everyone)
        pilots = set(self.pilots)
        rows = [
            {
                "source_user": account.source_user,
                "domain": mx_domain_of(account),
                "destination_user": account.destination_user,  # for the status page
            }
            for account in plan.accounts
            if account.source_user in chosen and (account.source_user in pilots) == self.pilot_group
        ]
        self._skip_for_the_run(context, everyone)
        limit = conf.getint("core", "max_map_length", fallback=1024)
        if len(rows) > limit:
            raise AirflowFailException(
                f"{len(rows)} accounts in this run, more than Airflow maps in one group "
                f"([core] max_map_length = {limit}): raise it (AIRFLOW__CORE__MAX_MAP_LENGTH) "
                "or run the plan in parts with the accounts parameter"
            )
        self.log.info("%d of the plan's %d accounts in this run", len(rows), len(everyone))
        return rows

    def _skip_for_the_run(self, context: Context, everyone: set[str]) -> None:
        params = context.get("params")
        skipped = []
        first_not_run = STOP_POINTS[stop_point(params)] + 1
        if first_not_run < len(STEPS):
            group = PILOT_GROUP if self.pilot_group else ACCOUNT_GROUP
            skipped.append(f"{group}.{STEPS[first_not_run]}")
            self.log.info("this run stops after %s: %s and the steps after it are skipped",
                          STEPS[first_not_run - 1], STEPS[first_not_run])  # fmt: skip
        if not self.pilot_group and (reason := no_cutover(params, everyone)):
            skipped.append("cutover_ready")
            self.log.info("cutover_ready is skipped: %s", reason)
        if skipped:
            context["ti"].xcom_push(XCOM_SKIPMIXIN_KEY, {XCOM_SKIPMIXIN_SKIPPED: skipped})


def no_cutover(params: Any, everyone: set[str]) -> str | None:
    """Why a run with these trigger parameters ends in no cutover (None: it can)."""
    selected = set(selected_accounts(params))
    if selected and selected != everyone:
        return (f"a test run of {len(selected & everyone)} of {len(everyone)} accounts: the MX "
                "record must not be changed yet, so no cutover is announced")  # fmt: skip
    if not runs_step(params, "initial_copy"):
        return "this run stops after test: there is no cutover"
    return None


def small_summary(summary: dict[str, Any], limit: int = XCOM_LIMIT) -> dict[str, Any]:
    """The summary as plain JSON, lists cut short when it would exceed ``limit`` bytes."""
    plain = json.loads(json.dumps(summary, default=str))
    if len(json.dumps(plain)) <= limit:
        return plain
    trimmed = {k: (v[:10] if isinstance(v, list) else v) for k, v in plain.items()}
    trimmed["truncated"] = True
    if len(json.dumps(trimmed)) > limit:
        trimmed = {k: v for k, v in trimmed.items() if not isinstance(v, list | dict)}
        trimmed["truncated"] = True
    return trimmed
