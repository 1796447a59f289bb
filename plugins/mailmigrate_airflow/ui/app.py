"""The status page's FastAPI app, mounted by the plugin at ``/mailmigrate`` on the API server.

Routes (all need an Airflow login: the UI's cookie or an ``Authorization: Bearer`` token, and
read access to the migration's DAG, its task instances and XComs, asked of the auth manager as
Airflow's own DAG endpoints ask it: with the DAG's team in multi-team mode):

* ``GET /mailmigrate/`` - the page: the migrations, and the chosen one's status
  (``?dag_id=...&run_id=...``).
* ``GET /mailmigrate/migrations/{dag_id}`` - the same page for one migration.
* ``GET /mailmigrate/api/migrations`` - the migrations (JSON).
* ``GET /mailmigrate/api/migrations/{dag_id}?run_id=`` - one run's status (JSON; latest run
  without ``run_id``): a row per account, the MX state per domain, totals and the time left.
  The page and this API take ``state`` (failed, running, waiting_mx, waiting_window, done,
  other), ``q`` (part of an address) and ``page``: one page of the matching accounts, the
  totals of all.
* ``GET /mailmigrate/reports/{dag_id}/{run_id}/{task_id}.html|.csv`` - an owner report, read
  back from where the task stored it.
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from mailmigrate_airflow.reports import PHASE_STEPS, stored_report
from mailmigrate_airflow.runs import URL_PREFIX, group_id_of
from mailmigrate_airflow.ui.deltas import add_delta_records, state_dir_of
from mailmigrate_airflow.ui.loading import list_migrations, runs_of
from mailmigrate_airflow.ui.page import render_page
from mailmigrate_airflow.ui.status import run_status
from mailmigrate_airflow.ui.totals import select_rows


async def current_user(request: Request) -> Any:
    """The logged-in Airflow user, as Airflow's own API authenticates it."""
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi.security import HTTPBearer

    credentials = await HTTPBearer(auto_error=False)(request)
    return await get_user(request, None, credentials)


def _authorize(user: Any, dag_id: str) -> None:
    """Read access to the DAG, its task instances and its XComs, or 403: the question Airflow's
    ``requires_access_dag`` asks, the DAG's team (its bundle's, ``DagModel.get_team_name``)
    included, so a user of another team is refused here as on ``/api/v2/dags/...``."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import (
        DagAccessEntity,
        DagDetails,
    )
    from airflow.models.dag import DagModel

    manager = get_auth_manager()
    details = DagDetails(id=dag_id, team_name=DagModel.get_team_name(dag_id))
    for entity in (None, DagAccessEntity.TASK_INSTANCE, DagAccessEntity.XCOM):
        if not manager.is_authorized_dag(
            method="GET", access_entity=entity, details=details, user=user
        ):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"no read access to {dag_id}")


def _allowed(user: Any) -> set[str]:
    from airflow.api_fastapi.app import get_auth_manager

    return set(get_auth_manager().get_authorized_dag_ids(user=user, method="GET"))


def _session() -> Any:
    from airflow.utils.session import create_session

    return create_session()


def _root(request: Request) -> str:
    """The API server's root path: where this app is mounted, less its own prefix."""
    return str(request.scope.get("root_path", "")).rstrip("/").removesuffix(URL_PREFIX)


def status_of(user: Any, dag_id: str, run_id: str | None) -> dict[str, Any]:
    _authorize(user, dag_id)
    with _session() as session:
        result = run_status(session, dag_id, run_id)
        if result is None:
            what = f"run {run_id} of {dag_id}" if run_id else f"migration {dag_id}"
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no {what}")
        result["runs"] = runs_of(session, dag_id)
    return result


def page_of(
    user: Any, dag_id: str, run_id: str | None, state: str | None, q: str | None, page: int
) -> dict[str, Any]:
    """One page of a migration's status (:func:`select_rows`), its rows with their scheduled
    deltas' records (:mod:`mailmigrate_airflow.ui.deltas`)."""
    chosen = select_rows(status_of(user, dag_id, run_id), state, q, page)
    with _session() as session:
        directory = state_dir_of(session, dag_id)
    return add_delta_records(chosen, directory)


def create_app() -> FastAPI:
    """The app (see the module docstring)."""
    app = FastAPI(
        title="Mailbox migrations",
        description="Status of the mailmigrate migration DAGs and their owner reports.",
        docs_url=None,
        redoc_url=None,
    )

    @app.get("/api/migrations")
    def migrations(user: Any = Depends(current_user)) -> dict[str, Any]:
        with _session() as session:
            return {"migrations": list_migrations(session, _allowed(user))}

    @app.get("/api/migrations/{dag_id}")
    def migration(
        dag_id: str,
        run_id: str | None = None,
        state: str | None = None,
        q: str | None = None,
        page: int = 1,
        user: Any = Depends(current_user),
    ):
        return page_of(user, dag_id, run_id, state, q, page)

    @app.get("/", response_class=HTMLResponse)
    @app.get("/migrations/{dag_id}", response_class=HTMLResponse)
    def page(
        request: Request,
        dag_id: str | None = None,
        run_id: str | None = None,
        state: str | None = None,
        q: str | None = None,
        page: int = 1,
        user: Any = Depends(current_user),
    ):
        """The page: the migrations the user may see and the chosen one (at ``/`` the only
        one, when there is just one)."""
        with _session() as session:
            migrations = list_migrations(session, _allowed(user))
        if dag_id is None and len(migrations) == 1:
            dag_id = migrations[0]["dag_id"]
        chosen = page_of(user, dag_id, run_id, state, q, page) if dag_id else None
        return HTMLResponse(render_page(migrations, chosen, _root(request)))

    @app.get("/reports/{dag_id}/{run_id}/{task_file}")
    def report(
        dag_id: str,
        run_id: str,
        task_file: str,
        map_index: int = -1,
        user: Any = Depends(current_user),
    ):
        task_id, _, kind = task_file.rpartition(".")
        if kind not in ("html", "csv") or not task_id:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "reports are .html or .csv")
        _authorize(user, dag_id)
        content = read_report(dag_id, run_id, task_id, kind, map_index)
        if kind == "html":
            return HTMLResponse(content)
        name = f"{task_id.replace('.', '-')}.csv"
        return Response(
            content,
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    @app.get("/migrations", include_in_schema=False)
    def migrations_redirect(request: Request) -> RedirectResponse:
        return RedirectResponse(f"{_root(request)}{URL_PREFIX}/")

    return app


def read_report(dag_id: str, run_id: str, task_id: str, kind: str, map_index: int = -1) -> str:
    """An owner report's HTML or CSV, read from where the run's copy task writes it
    (:func:`mailmigrate_airflow.reports.stored_report`): the reports root of the DAG version
    the run used, and the run and task ids; for a mapped copy task, the account its instance
    at ``map_index`` ran for. No XCom is consulted: any role allowed to write XComs could make
    the ``owner_report`` XCom name another scheme, server or file.
    """
    from airflow.models.dagbag import DBDagBag
    from airflow.models.dagrun import DagRun
    from sqlalchemy import select

    with _session() as session:
        run = session.scalars(
            select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id)
        ).first()
        dag = DBDagBag().get_dag_for_run(run, session=session) if run else None
        group = _mapped_account(session, dag_id, run_id, task_id, map_index) if dag else None
    task = dag.task_dict.get(task_id) if dag else None
    if task is None or task_id.rpartition(".")[2] not in PHASE_STEPS.values():
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no owner report for {task_id} in {run_id}")
    if map_index >= 0 and group is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"no owner report for {task_id}[{map_index}] in {run_id}"
        )
    location = stored_report(task, run_id, kind, group)
    try:
        return location.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"no owner report for {task_id} in {run_id} (yet)"
        ) from None


def _mapped_account(
    session: Any, dag_id: str, run_id: str, task_id: str, map_index: int
) -> str | None:
    """The group id of the account of a mapped task instance: its rendered map index, the
    account's source user (``map_index_template``), which the task process sets as it starts,
    so every instance that wrote a report has it. None for an unmapped or unknown instance."""
    from airflow.models.taskinstance import TaskInstance
    from sqlalchemy import select

    if map_index < 0:
        return None
    shown = session.scalar(
        select(TaskInstance._rendered_map_index).where(  # the column, not its fallback
            TaskInstance.dag_id == dag_id,
            TaskInstance.run_id == run_id,
            TaskInstance.task_id == task_id,
            TaskInstance.map_index == map_index,
        )
    )
    return group_id_of(shown) if shown else None
