"""What the status page shows, read in the API server from Airflow's models: the serialized DAG
(accounts, MX domains, delta windows, parallelism), the run's task instances, their XCom
summaries (``test``, ``initial_copy``, ``delta_copy``, ``wait_for_mx`` and the ``owner_report``
XComs) and the triggers of deferred sensors. Tasks never read the database; this runs in the
API server only.

:func:`migration_status` returns plain JSON-able data: one row per account and per-migration
totals with an estimate of the time left.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any

from mailmigrate.plan import DeltaWindow
from mailmigrate.window import next_window_start, parse_weekdays, parse_window
from mailmigrate_airflow.runs import ACCOUNT_GROUP, SELECT_TASKS, STEPS, group_id_of, report_url
from mailmigrate_airflow.ui.domains import account_mx, cutover_of, domains_of, sensor_of
from mailmigrate_airflow.ui.loading import (
    RunData,
    fingerprint,
    iso,
    load_run,
    run_dict,
)
from mailmigrate_airflow.ui.totals import totals_of

STEP_LABELS = {
    "test": "test",
    "initial_copy": "initial copy",
    "wait_for_mx": "waiting for the MX change",
    "wait_for_delta_window": "waiting for the delta window",
    "delta_copy": "delta copy",
}
ACTIVE = {"running", "queued", "scheduled", "deferred", "up_for_retry", "up_for_reschedule",
          "restarting", "awaiting_input"}  # fmt: skip
FAILED = {"failed", "upstream_failed"}
DONE = {"success", "skipped"}


STATUS_TTL = 60.0
"""Seconds a computed status is reused at most, while nothing in the run changed."""
_statuses: dict[str, tuple[float, tuple, dict[str, Any]]] = {}
_statuses_lock = threading.Lock()


def run_status(session: Any, dag_id: str, run_id: str | None = None) -> dict[str, Any] | None:
    """:func:`migration_status` of a run (``run_id``, else the latest); None when there is no
    such DAG or run.

    Computed again whenever the run or any of its task instances changed
    (:func:`~mailmigrate_airflow.ui.loading.fingerprint`), and at least every
    :data:`STATUS_TTL` seconds; otherwise the last result is reused, so paging, filtering and
    searching a 10,000-account run cost one small query. Callers get a shallow copy: they may
    replace its keys, not change its rows.
    """
    mark = fingerprint(session, dag_id, run_id)
    with _statuses_lock:
        hit = _statuses.get(dag_id)
    if mark is not None and hit and hit[1] == mark and time.monotonic() - hit[0] < STATUS_TTL:
        return dict(hit[2])
    data = load_run(session, dag_id, run_id)
    if data is None:
        return None
    status = migration_status(data)
    if mark is not None:
        with _statuses_lock:
            _statuses[dag_id] = (time.monotonic(), mark, status)
    return dict(status)


def accounts_of(data: RunData) -> list[dict[str, Any]]:
    """The accounts of a migration, in plan order: ``group_id`` (``Account.group_id``, the key
    of its steps in :class:`RunData`), ``account`` and ``destination_account`` (addresses),
    ``tasks`` (the task group holding its steps) and ``map_index`` (its instance there, -1 for
    an account outside the run or a static group) and ``domain`` (its MX domain, when mapped).

    A DAG with mapped groups lists every account of the plan in its ``accounts`` parameter; the
    run's ``accounts`` tasks say which instance is whose. DAG versions from before mapped groups
    have one static group per account.
    """
    dag = data.dag
    mapped = {
        row["source_user"]: (group, index, row)
        for group, rows in data.mapped.items()
        for index, row in enumerate(rows)
    }
    if ACCOUNT_GROUP in dag.task_group.children:
        users = dag.params.get_param("accounts").schema.get("items", {}).get("enum") or []
        accounts = []
        for user in users:
            group, index, row = mapped.get(user, (ACCOUNT_GROUP, -1, {}))
            accounts.append(
                {
                    "group_id": group_id_of(user),
                    "account": user,
                    "destination_account": row.get("destination_user") or user,
                    "tasks": group,
                    "map_index": index,
                    "domain": row.get("domain"),
                }
            )
        return accounts
    accounts = []
    for group_id, child in dag.task_group.children.items():
        if not hasattr(child, "children") or f"{group_id}.initial_copy" not in child.children:
            continue
        source = getattr(child, "group_display_name", "") or group_id
        tooltip = getattr(child, "tooltip", "") or ""
        destination = tooltip.partition(" -> ")[2] or source
        accounts.append(
            {"group_id": group_id, "account": source, "destination_account": destination,
             "tasks": group_id, "map_index": -1, "domain": None}
        )  # fmt: skip
    return accounts


def migration_status(data: RunData, now: dt.datetime | None = None) -> dict[str, Any]:
    """The status page's data: ``run``, ``accounts`` (rows), ``domains``, ``totals``, ``cutover``
    (the banner, see :func:`~mailmigrate_airflow.ui.domains.cutover_of`) and ``timezone`` (the
    plan's, in which the page shows times)."""
    now = now or dt.datetime.now(dt.UTC)
    dag, run = data.dag, data.run
    accounts = accounts_of(data)
    rows = [_account_row(data, account, now) for account in accounts]
    sensors = {a["group_id"]: sensor_of(dag, a) for a in accounts}
    status = {
        "dag_id": dag.dag_id,
        "description": getattr(dag, "description", "") or "",
        "parallel_accounts": getattr(dag, "max_active_tasks", None),
        "timezone": plan_timezone(dag),
        "run": run_dict(run) if run else None,
        "accounts": rows,
        "domains": domains_of(rows, sensors) if run else [],
        "extra_tasks": _extra_tasks(data),
        "totals": totals_of(rows, getattr(dag, "max_active_tasks", 1) or 1),
        "generated_at": now.isoformat(),
    }
    status["cutover"] = cutover_of(status) if run else None
    return status


def plan_timezone(dag: Any) -> str:
    """The plan's time zone (its delta window's), UTC when the DAG has none."""
    for task_id, task in dag.task_dict.items():
        if task_id.endswith(".wait_for_delta_window") and getattr(task, "timezone", None):
            return str(task.timezone)
    return "UTC"


def _step(data: RunData, task_id: str, group_task: str | None = None) -> dict[str, Any]:
    """A step's state; ``group_task``: the mapped group's task, whose unexpanded instance
    stands for every account of the run when the scheduler skipped the step as a whole."""
    ti = data.tis.get(task_id) or (data.tis.get(group_task) if group_task else None)
    if ti is None:
        return {"state": None, "try_number": 0, "url": ""}
    return {
        "state": str(ti.state) if ti.state else None,
        "try_number": ti.try_number,
        "start_date": iso(ti.start_date),
        "end_date": iso(ti.end_date),
        "url": "",  # only the rows shown get theirs (totals.select_rows)
    }


def _phase(steps: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Where the account is: the first step not yet done, with its state."""
    states = {name: step["state"] for name, step in steps.items()}
    if all(state == "skipped" for state in states.values()):
        return {"key": "not_selected", "label": "not in this run", "step": "", "filter": "other"}
    for name in STEPS:
        state = states[name]
        if state in FAILED:
            return {"key": "failed", "label": f"{STEP_LABELS[name]} failed", "step": name,
                    "filter": "failed"}  # fmt: skip
    for name in STEPS:
        state = states[name]
        if state in DONE:
            continue
        if state in ACTIVE:
            suffix = {"up_for_retry": " (retrying)", "queued": " (queued)", "scheduled": " (queued)",
                      "awaiting_input": " (awaiting approval)"}.get(state, "")  # fmt: skip
            waiting = {"wait_for_mx": "waiting_mx", "wait_for_delta_window": "waiting_window"}
            return {"key": "active", "label": STEP_LABELS[name] + suffix, "step": name,
                    "filter": waiting.get(name, "running")}  # fmt: skip
        return {"key": "pending", "label": f"before {STEP_LABELS[name]}", "step": name,
                "filter": "other"}  # fmt: skip
    if states["delta_copy"] == "success":
        return {"key": "done", "label": "done", "step": "delta_copy", "filter": "done"}
    last = max((n for n in STEPS if states[n] == "success"), key=STEPS.index, default="")
    label = f"stopped after {STEP_LABELS[last]}" if last else "not in this run"
    return {"key": "stopped", "label": label, "step": last, "filter": "other"}


def _account_row(data: RunData, account: dict[str, str], now: dt.datetime) -> dict[str, Any]:
    gid = account["group_id"]
    mapped = account["map_index"] >= 0
    steps = {
        name: _step(data, f"{gid}.{name}", f"{account['tasks']}.{name}" if mapped else None)
        for name in STEPS
    }
    test = data.xcoms.get((f"{gid}.test", "return_value")) or {}
    copies = {p: data.xcoms.get((f"{gid}.{p}_copy", "return_value")) or {} for p in ("initial", "delta")}  # fmt: skip
    reports = {p: data.xcoms.get((f"{gid}.{p}_copy", "owner_report")) for p in ("initial", "delta")}
    latest = reports["delta"] or reports["initial"] or {}
    verified = (latest.get("summary") or {}).get("totals") or {}
    test_folders = test.get("folders") or []
    planned_bytes = sum(f.get("bytes") or 0 for f in test_folders) if test_folders else None
    initial_totals = copies["initial"].get("totals") or {}
    source = {
        "messages": _first(verified.get("source_messages"), _sum(test_folders, "messages"),
                           initial_totals.get("source_messages")),
        "bytes": _first(verified.get("source_bytes"), planned_bytes,
                        initial_totals.get("source_bytes")),
    }  # fmt: skip
    destination = {
        "messages": verified.get("destination_messages"),
        "bytes": verified.get("destination_bytes"),
        "missing": verified.get("missing"),
    }
    copied = {
        "messages": sum((c.get("totals") or {}).get("copied", 0) for c in copies.values()),
        "bytes": sum((c.get("totals") or {}).get("copied_bytes", 0) for c in copies.values()),
        "seconds": sum(c.get("seconds") or 0 for c in copies.values()),
    }
    errors = _errors(test, copies, steps, latest)
    errors += [f"{phase} copy: {problem}" for phase, c in copies.items()
               for problem in (c.get("groupware") or {}).get("problems") or []]  # fmt: skip
    failed = sum((c.get("totals") or {}).get("failed", 0) for c in copies.values())
    folders = _first((latest.get("summary") or {}).get("folders"), len(test_folders) or None,
                     copies["initial"].get("folder_count"))  # fmt: skip
    report_links = {
        phase: {"html": _report_link(data, account, phase, "html"),
                "csv": _report_link(data, account, phase, "csv"), "ok": (r.get("summary") or {}).get("ok"),
                "mailed_to": r.get("mailed_to"), "mail_error": r.get("mail_error")}
        for phase, r in reports.items() if r
    }  # fmt: skip
    return {
        **account,
        "phase": _phase(steps),
        "steps": steps,
        "folders": folders,
        "groupware": _groupware(test, copies),
        "source": source,
        "destination": destination,
        "copied": copied,
        "failed_messages": failed,
        "errors": errors,
        "mx": account_mx(
            sensor_of(data.dag, account),
            steps["wait_for_mx"]["state"],
            data.xcoms.get((f"{gid}.wait_for_mx", "return_value")) or {},
        ),
        "last_delta": steps["delta_copy"].get("end_date")
        if steps["delta_copy"]["state"] == "success"
        else None,  # fmt: skip
        "next_delta": _next_delta(data, account, steps, now),
        "reports": report_links,
        "planned_bytes": planned_bytes,
        "initial": {
            "state": steps["initial_copy"]["state"],
            "bytes": initial_totals.get("copied_bytes", 0),
            "seconds": copies["initial"].get("seconds") or 0,
        },  # fmt: skip
    }


def _groupware(test: dict, copies: dict) -> dict[str, Any] | None:
    """Calendars, events, task lists, tasks, address books and contacts per side: the latest
    copy's counts, else the test's (``None``: the plan moves mail only)."""
    for summary in (copies["delta"], copies["initial"], test):
        if summary.get("groupware"):
            return {side: summary["groupware"][side] for side in ("source", "destination")}
    return None


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def _sum(items: list[dict[str, Any]], key: str) -> int | None:
    return sum(i.get(key) or 0 for i in items) if items else None


def _errors(test: dict, copies: dict, steps: dict, report: dict) -> list[str]:
    errors = [f"test: {p}" for p in test.get("problems") or []]
    for phase, summary in copies.items():
        if summary.get("error"):
            errors.append(f"{phase} copy: {summary['error']}")
        for folder in summary.get("folders") or []:
            if folder.get("error"):
                errors.append(f"{phase} copy: folder {folder.get('source')}: {folder['error']}")
        for failure in summary.get("failures") or []:
            errors.append(
                f"{phase} copy: message {failure.get('ref')} in {failure.get('folder')} refused: "
                f"{failure.get('reason')}"
            )
    for name, step in steps.items():
        if step["state"] == "failed" and not any(e.startswith(name.split("_")[0]) for e in errors):
            errors.append(f"{STEP_LABELS[name]} failed (see its log)")
    if report.get("mail_error"):
        errors.append(f"owner mail: {report['mail_error']}")
    if report.get("storage_error"):
        errors.append(f"owner report: {report['storage_error']}")
    return errors


def _report_link(data: RunData, account: dict[str, Any], phase: str, kind: str) -> str:
    task_id = f"{account['tasks']}.{phase}_copy"
    return report_url(
        data.dag.dag_id, data.run.run_id, task_id, kind, map_index=account["map_index"]
    )


def _next_delta(
    data: RunData, account: dict[str, Any], steps: dict, now: dt.datetime
) -> dict[str, Any] | None:
    """When the delta copy runs next: the deferred sensor's moment, else the next window."""
    gid = account["group_id"]
    delta, window_step = steps["delta_copy"]["state"], steps["wait_for_delta_window"]["state"]
    if delta in ("success", "skipped") or delta in ACTIVE:
        return None
    if any(step["state"] in FAILED for step in steps.values()):
        return None  # nothing runs until the failure is dealt with
    ti = data.tis.get(f"{gid}.wait_for_delta_window")
    if ti is not None and ti.trigger_id in data.triggers:
        moment = data.triggers[ti.trigger_id].get("moment")
        if moment is not None:
            return {"at": iso(moment), "note": "the delta window opens"}
    if window_step in ("success", "running"):
        return {"at": None, "note": "now: the delta window is open"}
    task_id = f"{account['tasks']}.wait_for_delta_window"
    if task_id not in data.dag.task_dict:
        return None
    task = data.dag.get_task(task_id)
    key = (task.timezone, task.window, tuple(task.weekdays or ()))
    if key not in data.windows:  # every account of a plan shares one window: compute it once
        data.windows[key] = _next_window(*key, now)
    moment = data.windows[key]
    if moment is None:
        return None
    if moment <= now:
        return {"at": None, "note": "once the MX change has propagated (the window is open)"}
    return {"at": moment.isoformat(), "note": "window opens (after the MX change)"}


def _next_window(timezone: str, window: str | None, weekdays: tuple, now: dt.datetime) -> Any:
    """When the delta window next opens (``now`` inside it), None when it cannot be told."""
    try:
        delta_window = DeltaWindow(
            timezone=timezone or "UTC",
            window=parse_window(window),
            weekdays=tuple(parse_weekdays(weekdays or range(7))),
        )
        return next_window_start(now, delta_window)
    except Exception:
        return None


def _extra_tasks(data: RunData) -> list[dict[str, Any]]:
    """The run's tasks outside the account groups (cutover_ready, approve_full_run)."""
    return [
        {**_step(data, task_id), "task_id": task_id}
        for task_id in sorted(data.dag.task_dict)
        if "." not in task_id and task_id not in SELECT_TASKS.values()
    ]
