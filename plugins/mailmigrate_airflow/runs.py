"""What a migration run is, in one place for the whole Airflow layer.

Operators, sensors, notifiers, reports, the approval step and the status page import their facts
about a run from here and from nowhere else: the steps of an account's group and the stop points,
the accounts a run selects, where the plans are and how one is loaded (its passwords masked in
the logs), the URLs of the status page and the owner reports, and how the engine's errors become
Airflow's "fail" or "retry". Imports go one way: ``ui`` -> ``runs``/``reports`` -> the engine;
this module imports only the engine and Airflow's SDK.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

from airflow.configuration import conf as api_conf
from airflow.sdk.configuration import conf
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
from airflow.sdk.log import mask_secret

from mailmigrate.errors import AuthenticationFailed, InputError, MailmigrateError, PlanError
from mailmigrate.plan import Plan, group_id
from mailmigrate.plan import load_plan as load_plan_file
from mailmigrate.redact import MIN_MASKED_LENGTH, maskable

if TYPE_CHECKING:
    from airflow.sdk import Context

T = TypeVar("T")

PLANS_DIR_ENV = "MAILMIGRATE_PLANS_DIR"

STEPS = ("test", "initial_copy", "wait_for_mx", "wait_for_delta_window", "delta_copy")
"""The steps of every account, in order: the tasks of the mapped group ``account``
(``account.test``, ...; contract)."""

STOP_POINTS = {"test": 0, "initial_copy": 1, "all": len(STEPS) - 1}
"""Values of the ``stop`` trigger parameter: the last step index that runs."""

URL_PREFIX = "/mailmigrate"
"""Where the status page's app (:mod:`mailmigrate_airflow.ui`) is mounted on the API server."""


# -- the plan ------------------------------------------------------------------------------


def plans_dir_for(dag_file: str | os.PathLike[str]) -> Path:
    """The plans directory: ``$MAILMIGRATE_PLANS_DIR`` (relative to the DAG file's directory
    unless absolute) or ``plans/`` next to the DAG file.

    Resolving from the DAG file means a worker running a versioned bundle reads the plan of
    that bundle version.
    """
    here = Path(dag_file).resolve().parent
    configured = os.environ.get(PLANS_DIR_ENV, "").strip()
    return (here / Path(configured).expanduser()) if configured else here / "plans"


def load_plan(context: Context, plan_file: str) -> Plan:
    """Load and validate the plan of the running DAG (``plan_file`` relative to its plans
    directory), then mask every account password in logs (those shorter than Airflow's
    ``[logging] min_length_masked_secret`` are not masked, and not sent to the masker, which
    would only warn about them). An invalid plan fails the task without retries."""
    with engine_errors("the plan"):
        plan = load_plan_file(plans_dir_for(context["dag"].fileloc) / plan_file)
    passwords = maskable(
        (secret for a in plan.accounts for secret in (a.source_password, a.destination_password)),
        conf.getint("logging", "min_length_masked_secret", fallback=MIN_MASKED_LENGTH),
    )
    if passwords:
        mask_secret(passwords)  # one message to the supervisor for all of them
    return plan


# -- what a run selects --------------------------------------------------------------------


def selected_accounts(params: Any) -> list[str]:
    """The ``accounts`` trigger parameter as a list; empty means every account."""
    value = params.get("accounts") if params else None
    if not value:
        return []
    if isinstance(value, str):  # a hand-written conf: "a@x, b@x"
        value = value.replace("\n", ",").split(",")
    return [str(user).strip() for user in value if str(user).strip()]


def stop_point(params: Any) -> str:
    """The ``stop`` trigger parameter (``all`` when not given)."""
    value = (params.get("stop") if params else None) or "all"
    if value not in STOP_POINTS:
        raise AirflowFailException(f"stop must be one of {', '.join(STOP_POINTS)}, not {value!r}")
    return value


def runs_step(params: Any, step: str) -> bool:
    """Whether a run with these trigger parameters gets as far as ``step``."""
    return STEPS.index(step) <= STOP_POINTS[stop_point(params)]


def group_id_of(source_user: str) -> str:
    """The task-group id of an account (:func:`mailmigrate.plan.group_id`)."""
    return group_id(source_user)


def check_selected(context: Context, source_user: str, step: str) -> None:
    """Raise AirflowSkipException unless ``step`` of ``source_user`` runs in this DAG run
    (trigger parameters ``accounts`` and ``stop``). The ``accounts`` task maps only the
    selected accounts; this check keeps a task run by hand (``airflow tasks test``) honest."""
    params = context.get("params")
    selected = selected_accounts(params)
    if selected and source_user not in selected:
        raise AirflowSkipException(
            f"{source_user} is not one of the {len(selected)} accounts selected for this run"
        )
    stop = stop_point(params)
    if step in STEPS and not runs_step(params, step):
        raise AirflowSkipException(f"this run stops after {stop}; {step} is not run")


# -- the mapped groups ---------------------------------------------------------------------

ACCOUNT_GROUP = "account"
"""The mapped task group of the accounts' five steps; one instance per account of the run."""
PILOT_GROUP = "pilot"
"""The same group over a plan's approval pilots (only plans with an ``approval`` section)."""
SELECT_TASKS = {ACCOUNT_GROUP: "accounts", PILOT_GROUP: "pilot_accounts"}
"""The task that lists each group's accounts of a run: its XCom is the group's map (map index
``i`` is the account of row ``i``)."""
MAP_INDEX_TEMPLATE = "{{ task.source_user }}"
"""Every mapped instance shows its mailbox in the grid and in its log (rendered per try)."""


def account_maps(select_xcoms: dict[str, Any]) -> dict[str, list[str]]:
    """Each mapped group's accounts by map index, from its select task's XCom (task id ->
    value, e.g. ``{"accounts": [{"source_user": ...}, ...]}``)."""
    return {
        group: [row["source_user"] for row in select_xcoms.get(task) or []]
        for group, task in SELECT_TASKS.items()
    }


def step_key(task_id: str, map_index: int | None, maps: dict[str, list[str]]) -> str:
    """``<account group id>.<step>`` of a task instance (``alice_example_com.initial_copy``):
    one name per account and step, whatever the DAG's shape. A mapped instance is named after
    the account at its map index (``maps``: :func:`account_maps`); any other task instance,
    ``cutover_ready`` or a static account group's step of a DAG version before mapped groups,
    by its task id."""
    group, _, step = task_id.rpartition(".")
    users = maps.get(group) or []
    if map_index is not None and 0 <= map_index < len(users):
        return f"{group_id_of(users[map_index])}.{step}"
    return task_id


# -- the engine's errors -------------------------------------------------------------------


@contextmanager
def engine_errors(where: str) -> Iterator[None]:
    """The one place where :mod:`mailmigrate.errors`' tree meets Airflow: a retryable error
    is raised as it is (Airflow retries the task with back-off), any other
    :class:`~mailmigrate.errors.MailmigrateError` fails the task without retries (retrying
    cannot help), its text prefixed with ``where``. Anything else propagates (and is retried)."""
    try:
        yield
    except MailmigrateError as exc:
        if exc.retryable:
            raise
        if isinstance(exc, PlanError):
            text = f"the plan is not valid (any more):\n{exc}"
        elif isinstance(exc, AuthenticationFailed):
            text = f"{where}: {exc} (not retried: fix the credentials, then clear this task)"
        else:
            text = f"{where}: {exc}"
        # Input errors are the whole story; an account's error keeps its cause for the log.
        raise AirflowFailException(text) from (None if isinstance(exc, InputError) else exc)


def run_engine(where: str, call: Callable[[], T]) -> T:
    """``call()`` under :func:`engine_errors`."""
    with engine_errors(where):
        return call()


# -- URLs ----------------------------------------------------------------------------------


def base_url() -> str:
    """``[api] base_url`` without a trailing slash ("" when not configured)."""
    return (api_conf.get("api", "base_url", fallback="") or "").rstrip("/")


def status_url(dag_id: str, run_id: str | None = None) -> str:
    """The migration's status page (absolute with ``[api] base_url``, else "")."""
    root = base_url()
    if not root:
        return ""
    query = f"?run_id={quote(run_id, safe='')}" if run_id else ""
    return f"{root}{URL_PREFIX}/migrations/{quote(dag_id, safe='')}{query}"


def report_url(
    dag_id: str, run_id: str, task_id: str, kind: str = "html", *, map_index: int | None = -1
) -> str:
    """The api-server URL of a task instance's owner report (absolute with ``[api]
    base_url``); a mapped instance's by its map index."""
    parts = "/".join(quote(p, safe="") for p in (dag_id, run_id, task_id))
    query = f"?map_index={map_index}" if map_index is not None and map_index >= 0 else ""
    return f"{base_url()}{URL_PREFIX}/reports/{parts}.{kind}{query}"
