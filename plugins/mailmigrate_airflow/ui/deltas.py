"""The scheduled after-hours deltas on the status page: per account the last delta, the last new
mail seen on the old server, quiet since when, and done (quiet or at the maximum).

They come from the accounts' delta records (:mod:`mailmigrate.quiet`) in the plan's state
directory, the one the scheduled deltas' ``select`` task was parsed with (serialized with it), so
the API server reads the same shared volume the workers write (docker compose mounts it on every
Airflow service). Only the rows of the page shown are read: a few small files per request.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from mailmigrate import quiet
from mailmigrate_airflow.ui.loading import iso, latest_dag

log = logging.getLogger(__name__)


def deltas_dag_id(dag_id: str) -> str:
    return f"{dag_id}_deltas"


def state_dir_of(session: Any, dag_id: str) -> Path | None:
    """The state directory of a migration's scheduled deltas; None without them."""
    try:
        dag = latest_dag(session, deltas_dag_id(dag_id))
    except Exception:  # a DAG that cannot be deserialized: the page shows no deltas
        log.exception("cannot read the scheduled deltas of %s", dag_id)
        return None
    task = dag.task_dict.get("select") if dag is not None else None
    directory = getattr(task, "state_dir", None)
    return Path(directory) if directory else None


def add_delta_records(status: dict[str, Any], state_dir: Path | None) -> dict[str, Any]:
    """Give each row shown its ``deltas`` (see :func:`delta_row`); ``status["deltas"]``: the
    scheduled deltas' DAG id, or None without them."""
    status["deltas"] = deltas_dag_id(status["dag_id"]) if state_dir else None
    plan = status["dag_id"].removeprefix("migration_")
    status["accounts"] = [
        {**row, "deltas": delta_row(state_dir, plan, row["account"]) if state_dir else None}
        for row in status["accounts"]
    ]
    return status


def delta_row(state_dir: Path, plan: str, account: str) -> dict[str, Any] | None:
    """``last_delta``, ``last_arrival``, ``quiet_since``, ``done``, ``reason``, ``warning``,
    ``arrivals`` of an account's record; None before the main DAG wrote one."""
    try:
        record = quiet.load(state_dir, plan, account)
    except (quiet.RecordError, OSError) as exc:
        return {"error": str(exc)}
    if record.released_at is None and record.last_delta_at is None:
        return None
    return {
        "last_delta": iso(record.last_delta_at),
        "last_delta_ok": record.last_delta_ok,
        "last_arrival": iso(record.last_arrival_at),
        "arrivals": record.arrivals,
        "quiet_since": iso(record.quiet_since),
        "done": iso(record.done_at),
        "reason": record.done_reason,
        "warning": record.warning,
    }
