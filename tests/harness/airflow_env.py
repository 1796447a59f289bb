"""An isolated Airflow 3 environment for tests: its own AIRFLOW_HOME, SQLite, the repo's dags/.

:func:`configure_airflow_environment` must run before anything imports ``airflow`` (Airflow reads
its configuration once, at import); ``tests/conftest.py`` calls it at import time.
:func:`migrate_metadata_db` creates the metadata tables once per test session.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.dagrun import DagRun
    from airflow.sdk import DAG

REPO_ROOT = Path(__file__).resolve().parents[2]
DAGS_FOLDER = REPO_ROOT / "dags"
PLUGINS_FOLDER = REPO_ROOT / "plugins"
#: The bundle that holds DAGs built in tests (in memory, from temporary plans): ``dag.test()``
#: only runs a DAG whose serialized form is in the metadata DB under some configured bundle.
HARNESS_BUNDLE = "test-harness"
LOCAL_BUNDLE_CLASS = "airflow.dag_processing.bundles.local.LocalDagBundle"


def configure_airflow_environment(home: Path | None = None) -> Path:
    """Point Airflow at a fresh home (SQLite) and the repo's dags/ and plugins/; return the home.

    :param home: the AIRFLOW_HOME to use; by default a new temporary directory.
    """
    if "airflow" in sys.modules:
        raise RuntimeError(
            "airflow was imported before the test environment was configured; "
            "configure_airflow_environment() must run first (tests/conftest.py does)"
        )
    home = Path(home or tempfile.mkdtemp(prefix="mailmigrate-airflow-")).resolve()
    home.mkdir(parents=True, exist_ok=True)
    harness_dags = home / "harness_dags"
    harness_dags.mkdir(exist_ok=True)
    bundles = [
        {"name": "dags-folder", "classpath": LOCAL_BUNDLE_CLASS, "kwargs": {}},
        {
            "name": HARNESS_BUNDLE,
            "classpath": LOCAL_BUNDLE_CLASS,
            "kwargs": {"path": str(harness_dags)},
        },
    ]
    settings = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__MAX_MAP_LENGTH": "50000",  # as docker-compose.yaml ships it
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PLUGINS_FOLDER),
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__FERNET_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),  # PyJWT: 64+ bytes
        "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(bundles),
    }
    os.environ.update(settings)
    # Connections a developer's shell may carry must not leak into tests.
    for name in [n for n in os.environ if n.startswith("AIRFLOW_CONN_")]:
        del os.environ[name]
    return home


def migrate_metadata_db() -> None:
    """Create or upgrade the metadata database (what ``airflow db migrate`` does; idempotent)."""
    from airflow.utils import db

    db.upgradedb()


def register_dag(dag: DAG) -> None:
    """Serialize an in-memory DAG into the metadata DB (bundle :data:`HARNESS_BUNDLE`).

    ``dag.test()`` refuses DAGs it cannot find serialized ("the dag is not serialized"); DAGs
    from the repo's dags/ folder are found by parsing it, DAGs built inside a test need this.
    """
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
    from airflow.utils.session import create_session

    with create_session() as session:
        DagBundlesManager().sync_bundles_to_db(session=session)
    bag = DagBag(dag_folder=os.devnull, collect_dags=False)
    bag.bag_dag(dag)
    sync_bag_to_db(bag, HARNESS_BUNDLE, None)


def run_dag_test(dag: DAG, **test_kwargs: Any) -> DagRun:
    """Register ``dag`` (see :func:`register_dag`) and run it once with ``dag.test()``.

    :param test_kwargs: passed to ``dag.test()`` (``logical_date``, ``run_conf``, ...).
    :return: the finished DagRun.
    """
    register_dag(dag)
    return dag.test(**test_kwargs)


def remove_airflow_home(home: Path) -> None:
    """Delete a temporary AIRFLOW_HOME made by :func:`configure_airflow_environment`."""
    shutil.rmtree(home, ignore_errors=True)


def load_dag_folder(folder: Path) -> DagBag:
    """Parse every Python file under ``folder`` as Airflow's DAG processor would (as a bundle).

    Safe mode is off, so a file is imported even when it does not mention "airflow" and "dag":
    any file that raises shows up in ``import_errors`` (keyed by path relative to ``folder``).
    """
    from airflow.dag_processing.dagbag import BundleDagBag

    folder = Path(folder).resolve()
    return BundleDagBag(
        dag_folder=folder, bundle_path=folder, bundle_name="dags-folder", safe_mode=False
    )


def run_outcome(run: DagRun) -> dict[str, dict[str, Any]]:
    """A finished run's task instances and XCom return values, keyed by step key: an
    account's instance of a mapped step as ``<account group id>.<step>``
    (``mailmigrate_airflow.operators.step_key``), any other by its task id.

    :return: ``{"states": ..., "tries": ..., "shown": (rendered map index), "xcoms": ...}``.
    """
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    from mailmigrate_airflow.runs import account_maps, step_key

    with create_session() as session:
        query = XComModel.get_many(run_id=run.run_id, dag_ids=run.dag_id, key="return_value")
        found = [(x.task_id, x.map_index, XComModel.deserialize_value(x))
                 for x in session.scalars(query)]  # fmt: skip
        maps = account_maps({task: value for task, index, value in found if index == -1})
        outcome: dict[str, dict[str, Any]] = {"states": {}, "tries": {}, "shown": {}}
        for ti in run.get_task_instances(session=session):
            key = step_key(ti.task_id, ti.map_index, maps)
            outcome["states"][key] = ti.state
            outcome["tries"][key] = ti.try_number
            outcome["shown"][key] = ti.rendered_map_index
    outcome["xcoms"] = {step_key(task, index, maps): value for task, index, value in found}
    return outcome
