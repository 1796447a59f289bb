"""The per-migration lines of the status page, from its account rows
(:func:`mailmigrate_airflow.ui.status.migration_status`): the totals, the number of accounts in
each state of the page's filter, and the estimate of the time the initial copies still need."""

from __future__ import annotations

from typing import Any

from mailmigrate_airflow.ui.loading import task_url

FILTERS = {
    "failed": "failed",
    "running": "running",
    "waiting_mx": "waiting for the MX change",
    "waiting_window": "waiting for the delta window",
    "done": "done",
    "other": "not started, stopped or not in this run",
}
"""The page's state filter: key -> words. Every account row is in exactly one (its
``phase.filter``)."""


def totals_of(rows: list[dict[str, Any]], parallel: int) -> dict[str, Any]:
    selected = [r for r in rows if r["phase"]["key"] != "not_selected"]
    phases: dict[str, int] = {}
    for row in selected:
        phases[row["phase"]["label"]] = phases.get(row["phase"]["label"], 0) + 1
    totals = {
        "accounts": len(rows),
        "selected": len(selected),
        "done": sum(1 for r in selected if r["phase"]["key"] == "done"),
        "initial_done": sum(1 for r in selected if r["initial"]["state"] == "success"),
        "states": {key: sum(1 for r in rows if r["phase"]["filter"] == key) for key in FILTERS},
        "failed": sum(1 for r in selected if r["phase"]["key"] == "failed"),
        "phases": phases,
        "source_messages": _total(selected, "source", "messages"),
        "source_bytes": _total(selected, "source", "bytes"),
        "destination_messages": _total(selected, "destination", "messages"),
        "destination_bytes": _total(selected, "destination", "bytes"),
        "copied_messages": sum(r["copied"]["messages"] for r in selected),
        "copied_bytes": sum(r["copied"]["bytes"] for r in selected),
        "failed_messages": sum(r["failed_messages"] for r in selected),
    }
    totals["estimate"] = estimate(selected, parallel)
    return totals


def _total(rows: list[dict[str, Any]], side: str, key: str) -> int | None:
    values = [r[side][key] for r in rows if r[side][key] is not None]
    return sum(values) if values else None


def estimate(rows: list[dict[str, Any]], parallel: int) -> dict[str, Any] | None:
    """Time left for the initial copies still to do, at the per-account rate of those done,
    ``parallel`` at a time; accounts of unknown size count as the average known size."""
    done = [r for r in rows if r["initial"]["state"] == "success" and r["initial"]["seconds"] > 0]
    todo = [r for r in rows if r["initial"]["state"] not in ("success", "skipped")
            and r["phase"]["key"] != "failed"]  # fmt: skip
    if not todo:
        return {
            "seconds": 0,
            "remaining_accounts": 0,
            "basis": "every selected initial copy is done",
        }
    if not done:
        return None
    rate = sum(r["initial"]["bytes"] for r in done) / sum(r["initial"]["seconds"] for r in done)
    sizes = [r["planned_bytes"] or r["source"]["bytes"] for r in rows]
    known = [s for s in sizes if s]
    average = sum(known) / len(known) if known else 0
    remaining = sum((r["planned_bytes"] or r["source"]["bytes"] or average) for r in todo)
    lanes = max(1, min(parallel, len(todo)))
    if rate <= 0:
        return None
    return {
        "seconds": round(remaining / (rate * lanes), 1),
        "remaining_accounts": len(todo),
        "remaining_bytes": int(remaining),
        "rate_bytes_per_second": round(rate, 1),
        "parallel": lanes,
        "basis": f"{len(done):,} finished initial copies, {lanes} accounts at a time",
    }


PER_PAGE = 50


def select_rows(
    status: dict[str, Any],
    state: str | None,
    query: str | None,
    page: int,
    per_page: int = PER_PAGE,
) -> dict[str, Any]:
    """Keep one page of the account rows that are in ``state`` (a :data:`FILTERS` key, or None for
    all) and whose source or destination address contains ``query`` (case-insensitive); the
    totals above stay those of every account. Adds ``listing``: the filter, the page and the
    number of matching rows."""
    needle = (query or "").strip().lower()
    state = state if state in FILTERS else None
    matching = [
        row
        for row in status["accounts"]
        if (state is None or row["phase"]["filter"] == state)
        and (not needle or needle in row["account"].lower()
             or needle in row["destination_account"].lower())
    ]  # fmt: skip
    pages = max(1, -(-len(matching) // per_page))
    page = min(max(1, page), pages)
    run_id = (status.get("run") or {}).get("run_id")

    def linked(step: dict[str, Any], task_id: str, map_index: int = -1) -> dict[str, Any]:
        """The step with its log's URL (new dicts: the computed status may be shared)."""
        if run_id is None or step["state"] is None:
            return step
        return {**step, "url": task_url(status["dag_id"], run_id, task_id, map_index)}

    status["accounts"] = [  # links for the rows shown only
        {**row, "steps": {n: linked(s, f"{row['tasks']}.{n}", row["map_index"])
                          for n, s in row["steps"].items()}}
        for row in matching[(page - 1) * per_page : page * per_page]
    ]  # fmt: skip
    status["extra_tasks"] = [linked(t, t["task_id"]) for t in status["extra_tasks"]]
    status["listing"] = {
        "state": state,
        "q": needle,
        "page": page,
        "pages": pages,
        "per_page": per_page,
        "matching": len(matching),
        "first": (page - 1) * per_page + 1 if matching else 0,
        "filters": FILTERS,
    }
    return status
