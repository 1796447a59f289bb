"""The DAG factory: one DAG ``migration_<name>`` per plan file.

``dags/migrations.py`` calls :func:`build_dags` with its own path. Every plan in the plans
directory (``plans/`` next to that file, or ``$MAILMIGRATE_PLANS_DIR``) becomes a DAG::

    migration_acme
      accounts >> account[mapped, one instance per account of the run, shown as its mailbox]
                    test >> initial_copy >> wait_for_mx >> wait_for_delta_window >> delta_copy
               account.initial_copy (every instance) >> cutover_ready

The DAG has the same seven tasks for 3 accounts or 20,000: ``accounts`` lists the run's
accounts (the trigger parameter ``accounts``, else all) and the group ``account`` is mapped
over that list, so a test migration of three accounts creates three instances of each step, and
parsing and serializing a plan do not grow with its accounts (a static group per account made
a 10,000-account plan take minutes to parse and 36 MB serialized; ``bench/plan_scale.py``).
A plan with an ``approval`` gets a second mapped group, ``pilot``, over its pilot accounts (see
:func:`mailmigrate_airflow.approval.add_approval`).

An invalid plan never costs the other plans their DAGs: its problems (``file:line: message``) are
recorded as an import error of the plan file itself, in the DagBag that is parsing
``migrations.py`` (see :func:`report_plan_error`), and logged.

Parsing stays cheap: plans are read from local files, nothing touches the network or the
database, and the engine is imported only when a task runs.

Each plan also gets ``migration_<name>_deltas`` (:func:`build_deltas_dag`), the scheduled
after-hours deltas: ``select >> delta (one per account due) >> wrap_up`` at each opening of the
delta window, until every old mailbox has gone quiet (:mod:`mailmigrate_airflow.deltas`).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import sys
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Param, TriggerRule, get_parsing_context, task_group
from airflow.sdk.definitions.param import ParamsDict

from mailmigrate import quiet
from mailmigrate.errors import PlanError
from mailmigrate.plan import Plan, Problem, find_plans, load_plan
from mailmigrate.window import format_window
from mailmigrate_airflow import deltas
from mailmigrate_airflow.notifiers import event_callbacks
from mailmigrate_airflow.operators import (
    CutoverReadyOperator,
    MailboxCopyOperator,
    MailboxTestOperator,
    NoMxCheckOperator,
    SelectAccountsOperator,
    WaitForDeltaWindowSensor,
    WaitForMxSensor,
)
from mailmigrate_airflow.runs import (
    ACCOUNT_GROUP,
    MAP_INDEX_TEMPLATE,
    PILOT_GROUP,
    SELECT_TASKS,
    STOP_POINTS,
    plans_dir_for,
)
from mailmigrate_airflow.timetable import AfterHoursTimetable

log = logging.getLogger(__name__)

RETRY_DELAY = dt.timedelta(minutes=2)  # first retry; doubles up to MAX_RETRY_DELAY
MAX_RETRY_DELAY = dt.timedelta(hours=1)
SENSOR_RETRY_DELAY = dt.timedelta(seconds=30)
TAGS = ["mailmigrate"]
STOP_LABELS = {
    "test": "test only: logins, sizes, quota, folder mapping",
    "initial_copy": "test and initial copy",
    "all": "everything, through wait for MX, delta window and delta copy",
}


def build_dags(dag_file: str) -> dict[str, DAG]:
    """Every valid plan's DAG by DAG id; each invalid plan reported as its own import error.

    A worker that parses the file to run one task gets only that task's DAG (Airflow's parsing
    context): building all DAGs of all plans for every task would cost seconds per task.

    :param dag_file: the calling DAG file (``__file__``); the plans directory is found from it.
    """
    plans_dir = plans_dir_for(dag_file)
    wanted = get_parsing_context().dag_id
    dags: dict[str, DAG] = {}
    names: dict[str, Path] = {}
    for path in find_plans(plans_dir):
        try:
            plan = load_plan(path)
            if plan.name in names:
                raise PlanError([_duplicate_name(path, plan.name, names[plan.name])])
            for other, other_path in names.items():
                if f"{other}_deltas" == plan.name or f"{plan.name}_deltas" == other:
                    raise PlanError([_duplicate_name(path, plan.name, other_path, scheduled=True)])
            names[plan.name] = path
            relative = path.relative_to(plans_dir).as_posix()
            if wanted is None or plan.dag_id == wanted:
                dags[plan.dag_id] = build_dag(plan, relative, dag_file)
            if wanted is None or plan.deltas_dag_id == wanted:
                dags[plan.deltas_dag_id] = build_deltas_dag(plan, relative, dag_file)
        except PlanError as exc:
            if wanted is None:  # the dag processor's parse reports; a task's parse need not
                report_plan_error(path, str(exc))
        except Exception as exc:  # a bug must not cost the other plans their DAGs either
            log.exception("building the DAG of %s failed", path)
            report_plan_error(path, f"{path}:1: cannot build the DAG: {type(exc).__name__}: {exc}")
    return dags


def build_dag(plan: Plan, plan_file: str, dag_file: str | None = None) -> DAG:
    """The DAG of one plan.

    :param plan_file: the plan's path relative to the plans directory; tasks reload it from there.
    :param dag_file: the DAG file defining it (its ``fileloc``; tasks find the plans from it).
    """
    users = [account.source_user for account in plan.accounts]
    with DAG(
        dag_id=plan.dag_id,
        description=(
            f"{len(users)} mailboxes from {plan.source_connection} to {plan.destination_connection}"
        ),
        doc_md=_doc(plan, plan_file),
        schedule=None,  # started by hand; the sensors wait for the MX change and the window
        catchup=False,
        max_active_runs=1,  # two runs would copy the same mailboxes at once
        max_active_tasks=plan.parallel_accounts,  # per run; each account runs one task at a time
        tags=TAGS,
        # The DAG file publishes what build_dags returns. Auto-registration would also publish
        # a DAG whose with-block raised half-way.
        auto_register=False,
        **event_callbacks(plan, plan_file),  # notify: task_failed, finished
    ) as dag:
        pilots = list(plan.approval.accounts) if plan.approval else []
        select, initial_copy = account_group(plan, plan_file, ACCOUNT_GROUP, pilots)
        initial_copies = [initial_copy]
        cutover = CutoverReadyOperator(
            task_id="cutover_ready",
            plan=plan_file,
            # Accounts outside the run are not mapped; a failed initial copy blocks it, and a
            # run with every initial copy skipped (stop = test) skips it.
            trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS,
            retries=2,  # a notifier's server may be briefly away
            retry_delay=dt.timedelta(minutes=1),
        )
        if plan.approval:
            # Only plans with an approval step import the standard provider's human-in-the-loop
            # operator: measured 8-23 ms of every parse of every other plan's DAG.
            from mailmigrate_airflow.approval import add_approval

            _, pilot_copy = account_group(plan, plan_file, PILOT_GROUP, pilots)
            initial_copies.append(pilot_copy)
            add_approval(plan, plan_file, dag, cutover)
        # ``accounts`` skips cutover_ready at once in a run that cannot end in a cutover.
        cutover.set_upstream([*initial_copies, select])
    # Set after the tasks exist: Airflow copies DAG params into every task created later, and the
    # serialized DAG would carry the account list once per task. Tasks read the run's params
    # through the DAG (process_params) all the same.
    dag.params = ParamsDict(_params(users))
    if dag_file:
        dag.fileloc = str(dag_file)
    return dag


def build_deltas_dag(plan: Plan, plan_file: str, dag_file: str | None = None) -> DAG:
    """The scheduled after-hours deltas of one plan, ``migration_<name>_deltas`` (see
    :mod:`mailmigrate_airflow.deltas`): a run at each opening of the delta window."""
    delta = plan.delta
    with DAG(
        dag_id=plan.deltas_dag_id,
        description=f"after-hours deltas of {plan.dag_id} until every old mailbox is quiet",
        doc_md=deltas.__doc__,
        schedule=AfterHoursTimetable(
            delta.timezone, format_window(delta.window), delta.weekdays, delta.repeat
        ),
        catchup=False,
        max_active_runs=1,  # two runs would copy the same mailboxes at once
        max_active_tasks=plan.parallel_accounts,
        # Unpaused: nothing is due until the main DAG hands accounts over.
        is_paused_upon_creation=False,
        tags=["mailmigrate-deltas"],  # not "mailmigrate": the Migrations page lists those
        auto_register=False,
        **event_callbacks(plan, plan_file, events=("task_failed",)),
    ) as dag:
        select = deltas.SelectDeltasOperator(
            task_id="select", plan=plan_file, state_dir=str(quiet.state_dir_of(plan))
        )
        per_account = deltas.ScheduledDeltaOperator.partial(
            task_id="delta",
            map_index_template=MAP_INDEX_TEMPLATE,
            # partial() takes its defaults from every __init__ in the class hierarchy, and the
            # one Airflow's metaclass gives AccountOperator says inlets/outlets=None, which a
            # task's context cannot iterate (Airflow 3.3).
            inlets=[],
            outlets=[],
            reports_url=plan.reports.url,
            reports_conn_id=plan.reports.conn_id,
            **_server_task(plan, plan_file),
        ).expand(source_user=select.output)
        wrap_up = deltas.DeltasWrapUpOperator(
            task_id="wrap_up", plan=plan_file, trigger_rule=TriggerRule.ALL_DONE
        )
        per_account >> wrap_up
    if dag_file:
        dag.fileloc = str(dag_file)
    return dag


def _server_task(plan: Plan, plan_file: str) -> dict[str, Any]:
    """The arguments of every copy task, the main DAG's (:func:`_account_tasks`) and the
    scheduled deltas', without the account, which the mapping gives."""
    server_task: dict[str, Any] = {
        "plan": plan_file,
        "source_conn_id": plan.source_connection,
        "destination_conn_id": plan.destination_connection,
        "retries": plan.retries,
        "retry_delay": RETRY_DELAY,
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": MAX_RETRY_DELAY,
    }
    if plan.pool:
        server_task["pool"] = plan.pool
    return server_task


def account_group(plan: Plan, plan_file: str, group: str, pilots: list[str]) -> tuple[Any, Any]:
    """The ``accounts`` task and the group ``group`` mapped over its list; returns that task
    and the group's ``initial_copy`` (every instance)."""
    select = SelectAccountsOperator(
        task_id=SELECT_TASKS[group], plan=plan_file, pilots=pilots, pilot_group=group == PILOT_GROUP
    )
    tasks: dict[str, Any] = {}

    @task_group(group_id=group, tooltip="one instance per account, shown as its mailbox")
    def steps(source_user: str, domain: str) -> None:
        tasks.update(_account_tasks(plan, plan_file, source_user, domain))

    steps.expand_kwargs(select.output)
    return select, tasks["initial_copy"]


def _account_tasks(plan: Plan, plan_file: str, source_user: Any, domain: Any) -> dict[str, Any]:
    """The group's five tasks, chained, by step (one instance of each per account of the run);
    ``source_user`` and ``domain`` are the group's mapped arguments."""
    each: dict[str, Any] = {"source_user": source_user, "map_index_template": MAP_INDEX_TEMPLATE}
    server_task: dict[str, Any] = {**each, **_server_task(plan, plan_file)}
    # The run's stop point: ``accounts`` skips the first step after it for the whole run
    # (operators.SelectAccountsOperator); every task also checks it (operators.AccountStep).
    test = MailboxTestOperator(task_id="test", **server_task)
    # Where the owner reports go, serialized with the copy tasks for the status page to read.
    reports = {"reports_url": plan.reports.url, "reports_conn_id": plan.reports.conn_id}
    initial = MailboxCopyOperator(task_id="initial_copy", phase="initial", **server_task, **reports)
    # A sensor's own timeout fails it for good; retries only cover the rest, e.g. a trigger that
    # fires before the scheduler has recorded the deferral (apache/airflow#72716).
    waiting: dict[str, Any] = {**each, "retries": 2, "retry_delay": SENSOR_RETRY_DELAY}
    wait_for_mx: Any
    if plan.mx is None:
        wait_for_mx = NoMxCheckOperator(task_id="wait_for_mx", **each)
    else:
        wait_for_mx = WaitForMxSensor(
            **waiting,
            task_id="wait_for_mx",
            domain=domain,
            expect=list(plan.mx.expect),
            resolvers=list(plan.mx.resolvers),
            authoritative=list(plan.mx.authoritative),
            poke_interval=plan.mx.poke_interval,
            timeout=plan.mx.timeout,
        )
    wait_for_window = WaitForDeltaWindowSensor(
        **waiting,
        task_id="wait_for_delta_window",
        timezone=plan.delta.timezone,
        window=format_window(plan.delta.window),
        weekdays=list(plan.delta.weekdays),
    )
    delta = MailboxCopyOperator(task_id="delta_copy", phase="delta", **server_task, **reports)
    test >> initial >> wait_for_mx >> wait_for_window >> delta
    return {
        "test": test,
        "initial_copy": initial,
        "wait_for_mx": wait_for_mx,
        "wait_for_delta_window": wait_for_window,
        "delta_copy": delta,
    }


def _params(users: list[str]) -> dict[str, Param]:
    return {
        "accounts": Param(
            default=[],
            type=["array", "null"],
            items={"type": "string", "enum": users},
            uniqueItems=True,
            examples=users,
            title="Accounts",
            description=(
                "Source users to migrate in this run; empty for all. Pick a few large mailboxes "
                "for a test migration (cutover_ready then stays skipped)."
            ),
        ),
        "stop": Param(
            default="all",
            type="string",
            enum=list(STOP_POINTS),
            values_display=STOP_LABELS,
            title="Run until",
            description="The last step to run; the steps after it are skipped.",
        ),
    }


def _doc(plan: Plan, plan_file: str) -> str:
    mx = (
        f"wait for MX of the accounts' domains to show {', '.join(plan.mx.expect)}"
        if plan.mx
        else "no MX check (the plan has no `mx` section)"
    )
    window = format_window(plan.delta.window) or "any time"
    return "\n".join(
        [
            f"Mailbox migration from plan `{plan_file}`: {len(plan.accounts)} accounts, "
            f"`{plan.source_connection}` -> `{plan.destination_connection}`.",
            "",
            f"* {plan.parallel_accounts} accounts at a time, {plan.retries} retries per copy"
            + (f", pool `{plan.pool}`" if plan.pool else ""),
            f"* {mx}",
            f"* delta copy window: {window} ({plan.delta.timezone})",
            "",
            "Trigger with **Accounts** to run a test migration of a few accounts, and with "
            "**Run until** to stop after the test or the initial copy.",
        ]
    )


def _duplicate_name(path: Path, name: str, first: Path, scheduled: bool = False) -> Any:
    line = 1
    for number, text in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        if re.match(r"name\s*:", text):
            line = number
            break
    what = (
        "would share a DAG id (migration_<name>_deltas) with"
        if scheduled
        else ("is already the name of")
    )
    return Problem(str(path), line, f'name: "{name}" {what} {first}; DAG ids must be unique')


def report_plan_error(path: Path, message: str) -> bool:
    """Record an invalid plan as an import error of the plan file; log it in any case.

    Airflow keeps import errors per file, and the only error a DAG file can raise takes every
    DAG of that file with it. So the error goes into the ``import_errors`` of the DagBag that is
    importing this file right now (the dag-processor's, ``airflow dags list-import-errors``'s,
    a test's), keyed by the plan's path relative to the bundle, which is how the UI lists it.

    :return: whether a parsing DagBag was found (``False`` on a plain import).
    """
    log.error("invalid migration plan, no DAG for it:\n%s", message)
    bag = _parsing_dagbag()
    if bag is None:
        return False
    bundle = getattr(bag, "bundle_path", None)
    key = str(path)
    if bundle:
        try:
            key = str(Path(path).resolve().relative_to(Path(bundle).resolve()))
        except ValueError:
            pass  # plans outside the bundle ($MAILMIGRATE_PLANS_DIR elsewhere): absolute path
    bag.import_errors[key] = message
    return True


def _parsing_dagbag() -> Any:
    """The DagBag whose ``process_file`` is executing the calling DAG file, if any."""
    module = sys.modules.get("airflow.dag_processing.dagbag")
    dagbag_class = getattr(module, "DagBag", None)
    if dagbag_class is None:
        return None
    frame = sys._getframe(1)
    while frame is not None:
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, dagbag_class) and isinstance(
            getattr(candidate, "import_errors", None), dict
        ):
            return candidate
        frame = frame.f_back
    return None
