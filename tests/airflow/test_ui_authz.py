"""Who may read what on the status page, with Airflow's teams, and where owner reports are read.

Airflow in multi-team mode (``[core] multi_team``) with two teams, each owning a DAG bundle with
one migration DAG; simple-auth-manager users: a viewer of each team, a viewer without a team,
an admin and nobody at all. Every route of the page's app (list, detail page, JSON API, both
report files) must answer each of them as Airflow's own ``/api/v2/dags/{dag_id}`` does. The
report route reads the file from the reports root the DAG was parsed with, never from the
location an ``owner_report`` XCom names (which any role allowed to write XComs can change),
and report folders of different run ids never coincide.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from urllib.parse import quote

import pytest
from harness.airflow_env import LOCAL_BUNDLE_CLASS, REPO_ROOT
from harness.ops_helpers import client

from mailmigrate.plan import load_plan
from mailmigrate_airflow.factory import build_dag
from mailmigrate_airflow.reports import safe_part

TEAMS = ("team_a", "team_b")
GROUP = "owner_old_example"  # the one account's group id: its reports' folder
BUNDLES = "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"


def as_user(username: str, role: str | None, teams: list[str] | None = None):
    """An API client logged in (the UI's cookie) as a simple-auth-manager user with teams."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    test_client = client()  # creates the app and its auth manager
    user = SimpleAuthManagerUser(username=username, role=role, teams=teams)
    test_client.cookies.set("_token", get_auth_manager().generate_jwt(user))
    return test_client


@pytest.fixture(scope="module")
def teams(airflow_db, tmp_path_factory):
    """Multi-team Airflow: per team a bundle with a migration DAG (its reports under the team's
    own root) and a run of it, triggered over the REST API. Yields ``{team: (dag_id, run_id,
    reports root)}``."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
    from airflow.models.team import Team
    from airflow.utils.session import create_session

    patch = pytest.MonkeyPatch()
    patch.setenv("AIRFLOW__CORE__MULTI_TEAM", "True")
    root = tmp_path_factory.mktemp("teams")
    bundles = json.loads(os.environ[BUNDLES])
    for team in TEAMS:
        bundles.append({"name": f"bundle_{team}", "classpath": LOCAL_BUNDLE_CLASS,
                        "kwargs": {"path": str(root / team)}, "team_name": team})  # fmt: skip
    patch.setenv(BUNDLES, json.dumps(bundles))
    with create_session() as session:
        for team in TEAMS:
            if session.get(Team, team) is None:
                session.add(Team(name=team))
    DagBundlesManager().sync_bundles_to_db(deactivate_missing=False)
    migrations = {}
    admin = client()
    for team in TEAMS:
        plans = root / team / "plans"
        plans.mkdir(parents=True)
        shutil.copy(REPO_ROOT / "dags" / "migrations.py", root / team / "migrations.py")
        (plans / "accounts.csv").write_text(
            "source_user,source_password,destination_user,destination_password\n"
            "owner@old.example,,owner@new.example,\n"
        )
        (plans / "m.yaml").write_text(
            f"name: authz_{team}\nsource: {{connection: x}}\ndestination: {{connection: y}}\n"
            f"accounts: accounts.csv\nreports: {{url: {root / team / 'reports'}}}\n"
        )
        dag = build_dag(load_plan(plans / "m.yaml"), "m.yaml", str(root / team / "migrations.py"))
        bag = DagBag(dag_folder=os.devnull, collect_dags=False)
        bag.bag_dag(dag)
        sync_bag_to_db(bag, f"bundle_{team}", None)
        triggered = admin.post(f"/api/v2/dags/{dag.dag_id}/dagRuns", json={"logical_date": None})
        assert triggered.status_code == 200, triggered.text
        run_id = triggered.json()["dag_run_id"]
        _expand_for_one_account(dag.dag_id, run_id, "owner@old.example")
        migrations[team] = (dag.dag_id, run_id, root / team / "reports")
    yield migrations
    patch.undo()


def _expand_for_one_account(dag_id: str, run_id: str, source_user: str) -> None:
    """What the scheduler and the task processes do to a run of one account (it is not run
    here): the mapped group's instances get map index 0 and show the account."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import update

    with create_session() as session:
        session.execute(
            update(TaskInstance)
            .where(
                TaskInstance.dag_id == dag_id,
                TaskInstance.run_id == run_id,
                TaskInstance.task_id.startswith("account."),
            )
            .values(map_index=0, _rendered_map_index=source_user)
        )


def _report_file(reports, dag_id: str, run_id: str, phase: str = "initial") -> os.PathLike:
    """Where the copy task writes its report: ``<root>/<dag>/<run>/<group>/<phase>.html``."""
    return reports / dag_id / safe_part(run_id) / GROUP / f"{phase}.html"


def _routes(dag_id: str, run_id: str) -> list[str]:
    run = quote(run_id, safe="")
    return [
        f"/mailmigrate/api/migrations/{dag_id}",
        f"/mailmigrate/api/migrations/{dag_id}?run_id={run}",
        f"/mailmigrate/migrations/{dag_id}",
        f"/mailmigrate/?dag_id={dag_id}",
        f"/mailmigrate/reports/{dag_id}/{run}/account.initial_copy.html?map_index=0",
        f"/mailmigrate/reports/{dag_id}/{run}/account.initial_copy.csv?map_index=0",
    ]


def test_every_route_answers_each_user_as_airflows_own_dag_endpoint(teams):
    for dag_id, run_id, reports in teams.values():
        report = _report_file(reports, dag_id, run_id)
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(f"<p>report of {dag_id}</p>")
        report.with_suffix(".csv").write_text(f"migration,folder,messages\n{dag_id},INBOX,1\n")
    users = {
        "viewer of team_a": (as_user("ann", "viewer", ["team_a"]), {"team_a"}),
        "viewer of team_b": (as_user("bob", "viewer", ["team_b"]), {"team_b"}),
        "user of both teams": (as_user("uli", "user", list(TEAMS)), set(TEAMS)),
        "viewer without a team": (as_user("vic", "viewer"), set()),
        "admin": (as_user("ada", "admin"), set(TEAMS)),
        "user without a role": (as_user("nob", None, list(TEAMS)), set()),
    }
    for who, (api, readable) in users.items():
        listed = {m["dag_id"] for m in api.get("/mailmigrate/api/migrations").json()["migrations"]}
        for team, (dag_id, run_id, _) in teams.items():
            airflow_says = api.get(f"/api/v2/dags/{dag_id}").status_code
            assert airflow_says == (200 if team in readable else 403), (who, team)
            assert (dag_id in listed) == (team in readable), (who, team, listed)
            for route in _routes(dag_id, run_id):
                answer = api.get(route)
                assert answer.status_code == airflow_says, (who, route, answer.text[:200])
                if answer.status_code == 200 and "/reports/" in route:
                    assert dag_id in answer.text
    anonymous = client()
    anonymous.cookies.clear()
    for dag_id, run_id, _ in teams.values():
        for route in ["/mailmigrate/", "/mailmigrate/api/migrations", *_routes(dag_id, run_id)]:
            assert anonymous.get(route).status_code == 401, route


def test_a_report_is_read_from_the_configured_root_whatever_the_xcom_says(teams, tmp_path):
    """The ``owner_report`` XCom, rewritten over the REST API (as any role allowed to write
    XComs can) to name another file of the same shape and a webhdfs server on loopback, moves
    nothing: the report comes from the DAG's reports root, and nobody is asked for another."""
    dag_id, run_id, reports = teams["team_a"]
    _report_file(reports, dag_id, run_id, "delta").parent.mkdir(parents=True, exist_ok=True)
    _report_file(reports, dag_id, run_id, "delta").write_text("<p>the real delta report</p>")
    planted = tmp_path / dag_id / safe_part(run_id) / GROUP / "delta.html"
    planted.parent.mkdir(parents=True)
    planted.write_text("<p>PLANTED</p>")
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    admin = client()
    run = quote(run_id, safe="")
    task = "account.delta_copy"  # the one account's instance: map index 0
    entries = f"/api/v2/dags/{dag_id}/dagRuns/{run}/taskInstances/{task}/xcomEntries"
    tail = f"{dag_id}/{safe_part(run_id)}/{GROUP}/delta"
    for html, conn_id in ((f"file://{planted}", None), (f"webhdfs://127.0.0.1:{port}/{tail}.html", "x")):  # fmt: skip
        value = {"summary": {}, "html": html, "csv": html[:-4] + "csv", "conn_id": conn_id}
        body = {"key": "owner_report", "value": value, "map_index": 0}
        stored = admin.post(entries, json=body)
        if stored.status_code == 409:  # replace the one written before
            stored = admin.patch(f"{entries}/owner_report", json={"value": value, "map_index": 0})
        assert stored.status_code in (200, 201), stored.text
        answer = admin.get(f"/mailmigrate/reports/{dag_id}/{run}/{task}.html?map_index=0")
        assert answer.status_code == 200 and answer.text == "<p>the real delta report</p>"
    with pytest.raises(TimeoutError):
        listener.accept()  # nobody came
    listener.close()
    missing = admin.get(f"/mailmigrate/reports/{dag_id}/{run}/{task}.csv?map_index=0")
    assert missing.status_code == 404 and str(reports) not in missing.text
    unknown = admin.get(f"/mailmigrate/reports/{dag_id}/{run}/account.test.html?map_index=0")
    assert unknown.status_code == 404


def test_report_folders_of_different_run_ids_never_coincide():
    """Run ids differing only in characters outside ``[A-Za-z0-9._-]`` (or in how ``_`` and
    the escape character appear) get different folders; safe ones keep their name."""
    colliding = [
        "manual__2026-12-02T04:37:09+00:00",
        "manual__2026-12-02T04_37_09_00_00",
        "manual__2026-12-02T04~3A37~3A09~2B00~3A00",
        "a/b",
        "a_b",
        "a~2Fb",
        "..",
        "~2E~2E",
        "é",
        "~C3~A9",
    ]
    folders = [safe_part(run_id) for run_id in colliding]
    assert len(set(folders)) == len(folders), folders
    assert safe_part("manual__2026-12-02T04_37_09_00_00") == "manual__2026-12-02T04_37_09_00_00"
    assert safe_part("migration_acme") == "migration_acme"
    assert safe_part(colliding[0]) == "manual__2026-12-02T04~3A37~3A09~2B00~3A00"
    for folder in folders:
        assert "/" not in folder and folder not in (".", "..") and "%" not in folder
