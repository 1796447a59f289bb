"""What the status page reads from Airflow's models, in the API server: the migration DAGs, a
run's task instances (only the columns the page uses), XComs and triggers, and the serialized DAG
through one shared, cached DAG bag. A few queries per page, whatever the number of accounts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from typing import Any
from urllib.parse import quote

from mailmigrate_airflow.runs import SELECT_TASKS, step_key

TAG = "mailmigrate"


@dataclass
class RunData:
    """Everything one status page reads, loaded by :func:`load_run`."""

    dag: Any  # SerializedDAG
    run: Any | None  # DagRun
    # Keyed by step key, ``<account group id>.<step>`` (operators.step_key): a mapped
    # instance by its account, any other task instance by its task id.
    tis: dict[str, Any] = field(default_factory=dict)  # step key -> TaskInstance's columns
    xcoms: dict[tuple[str, str], Any] = field(default_factory=dict)  # (step key, key) -> value
    #: the mapped groups' accounts: group -> the ``accounts`` task's rows, by map index
    mapped: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    triggers: dict[int, dict[str, Any]] = field(default_factory=dict)  # trigger id -> kwargs
    windows: dict[tuple, Any] = field(default_factory=dict)  # (zone, window, days) -> next start


def list_migrations(session: Any, allowed: set[str] | None) -> list[dict[str, Any]]:
    """The migration DAGs (tag ``mailmigrate``) the user may read, with their latest run."""
    from airflow.models.dag import DagModel, DagTag
    from airflow.models.dagrun import DagRun
    from sqlalchemy import select

    query = (
        select(DagModel)
        .join(DagTag, DagTag.dag_id == DagModel.dag_id)
        .where(DagTag.name == TAG, DagModel.is_stale.is_(False))
        .order_by(DagModel.dag_id)
    )
    migrations = []
    for dag_model in session.scalars(query):
        if allowed is not None and dag_model.dag_id not in allowed:
            continue
        run = session.scalars(
            select(DagRun)
            .where(DagRun.dag_id == dag_model.dag_id)
            .order_by(DagRun.run_after.desc(), DagRun.id.desc())
            .limit(1)
        ).first()
        migrations.append(
            {
                "dag_id": dag_model.dag_id,
                "description": dag_model.description or "",
                "paused": bool(dag_model.is_paused),
                "last_run": run_dict(run) if run else None,
            }
        )
    return migrations


def runs_of(session: Any, dag_id: str, limit: int = 20) -> list[dict[str, Any]]:
    """The latest runs of a migration, newest first (for the run picker)."""
    from airflow.models.dagrun import DagRun
    from sqlalchemy import select

    query = (
        select(DagRun)
        .where(DagRun.dag_id == dag_id)
        .order_by(DagRun.run_after.desc(), DagRun.id.desc())
        .limit(limit)
    )
    return [run_dict(run) for run in session.scalars(query)]


def load_run(session: Any, dag_id: str, run_id: str | None = None) -> RunData | None:
    """The DAG (the version the run used) and a run (``run_id``, else the latest) with its task
    instances, XComs and triggers; ``None`` when the DAG is unknown."""
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.trigger import Trigger
    from airflow.models.xcom import XComModel
    from sqlalchemy import select

    query = select(DagRun).where(DagRun.dag_id == dag_id)
    if run_id:
        query = query.where(DagRun.run_id == run_id)
    run = session.scalars(
        query.order_by(DagRun.run_after.desc(), DagRun.id.desc()).limit(1)
    ).first()
    if run_id and run is None:
        return None
    bag = _dag_bag()
    dag = (bag.get_dag_for_run(run, session=session) if run else None) or (
        bag.get_latest_version_of_dag(dag_id, session=session)
    )
    if dag is None:
        return None
    data = RunData(dag=dag, run=run)
    if run is None:
        return data
    # Only the columns the page reads: a 10,000-account run has 50,000 task instances.
    # The accounts of the mapped groups first: they name every mapped instance.
    xcom_query = select(
        XComModel.task_id, XComModel.map_index, XComModel.key, XComModel.value
    ).where(
        XComModel.dag_id == dag_id,
        XComModel.run_id == run.run_id,
        XComModel.key.in_(("return_value", "owner_report")),
    )
    xcoms = []
    for xcom in session.execute(xcom_query):
        try:
            xcoms.append((xcom.task_id, xcom.map_index, xcom.key, xcom_value(xcom, XComModel)))
        except Exception:  # an unreadable XCom must not take the page down
            continue
    for group, task_id in SELECT_TASKS.items():
        rows = [v for t, i, k, v in xcoms if (t, i, k) == (task_id, -1, "return_value")]
        if rows and isinstance(rows[0], list):
            data.mapped[group] = rows[0]
    maps = {group: [row["source_user"] for row in rows] for group, rows in data.mapped.items()}
    for task_id, map_index, key, value in xcoms:
        data.xcoms[(step_key(task_id, map_index, maps), key)] = value
    # Only the columns the page uses: a 10,000-account run has 50,000 task instances.
    ti_query = select(
        TaskInstance.task_id,
        TaskInstance.map_index,
        TaskInstance.state,
        TaskInstance.try_number,
        TaskInstance.start_date,
        TaskInstance.end_date,
        TaskInstance.trigger_id,
    ).where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run.run_id)
    for ti in session.execute(ti_query):
        data.tis[step_key(ti.task_id, ti.map_index, maps)] = ti
    trigger_ids = {ti.trigger_id for ti in data.tis.values() if ti.trigger_id}
    if trigger_ids:
        for trigger in session.scalars(select(Trigger).where(Trigger.id.in_(trigger_ids))):
            try:
                data.triggers[trigger.id] = trigger.kwargs
            except Exception:
                continue
    return data


def fingerprint(session: Any, dag_id: str, run_id: str | None = None) -> tuple | None:
    """What changes whenever the page's data may: the run (``run_id``, else the latest), its
    state and the number and last update of its task instances; None without a run."""
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from sqlalchemy import func, select

    query = select(DagRun.run_id, DagRun.state, DagRun.updated_at).where(DagRun.dag_id == dag_id)
    if run_id:
        query = query.where(DagRun.run_id == run_id)
    run = session.execute(
        query.order_by(DagRun.run_after.desc(), DagRun.id.desc()).limit(1)
    ).first()
    if run is None:
        return None
    tis = session.execute(
        select(func.count(), func.max(TaskInstance.updated_at)).where(
            TaskInstance.dag_id == dag_id, TaskInstance.run_id == run.run_id
        )
    ).one()
    return (run.run_id, run.state, run.updated_at, *tis)


def xcom_value(xcom: Any, model: Any) -> Any:
    """An XCom's value. The tasks' summaries are plain JSON objects: read as such, which is
    several times faster than Airflow's decoder (20,000 of them on a 10,000-account page);
    anything else goes through Airflow's own ``deserialize_value``."""
    value = xcom.value
    if isinstance(value, str) and value.startswith("{") and "__classname__" not in value:
        try:
            return json.loads(value)
        except ValueError:
            pass
    return model.deserialize_value(xcom)


def latest_dag(session: Any, dag_id: str) -> Any:
    """The latest serialized version of a DAG (None when unknown), from the shared bag."""
    return _dag_bag().get_latest_version_of_dag(dag_id, session=session)


@cache
def _dag_bag() -> Any:
    """One DAG bag for every request, as the api-server's own routes share theirs (LRU and TTL
    from ``[api] dag_cache_size`` and ``dag_cache_ttl``): deserializing a 10,000-account DAG
    takes seconds, a DAG version never changes."""
    from airflow.api_fastapi.common.dagbag import create_dag_bag

    return create_dag_bag()


def run_dict(run: Any) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "state": str(run.state) if run.state else None,
        "run_after": iso(run.run_after),
        "start_date": iso(run.start_date),
        "end_date": iso(run.end_date),
        "conf": run.conf or {},
    }


def iso(value: Any) -> str | None:
    return value.isoformat() if value else None


def task_url(dag_id: str, run_id: str, task_id: str, map_index: int | None = None) -> str:
    """The task instance's page in the Airflow UI (its logs); a mapped one's by map index."""
    dag, run, task = (quote(part, safe="") for part in (dag_id, run_id, task_id))
    url = f"/dags/{dag}/runs/{run}/tasks/{task}"
    return url if map_index is None or map_index < 0 else f"{url}/mapped/{map_index}"
