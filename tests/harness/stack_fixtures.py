"""Session fixtures around one ``airflow standalone`` shared by the end-to-end and browser tests.

Starting Airflow costs half a minute, a migration run another: both happen once per session,
whichever test asks first. Test modules load this with ``pytest_plugins``, so that every module
gets the same fixture instances.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness.airflow_stack import AirflowStack
from harness.dovecot import DovecotServer
from harness.e2e_migration import MigrationScenario, RunRecord
from harness.postgres import PostgresServer


@dataclass
class StandaloneMigration:
    stack: AirflowStack
    scenario: MigrationScenario
    #: the DAG as the API showed it before the test unpaused it.
    dag_before_unpause: dict[str, Any]
    state_dir: Path


@pytest.fixture(scope="session")
def standalone_migration(
    legacy_imap: DovecotServer, modern_imap: DovecotServer
) -> Iterator[StandaloneMigration]:
    """``airflow standalone`` (LocalExecutor) on PostgreSQL with the plan of a two-account
    migration, its connections created and its DAG unpaused through the REST API.

    Not SQLite: with every component writing to one SQLite file, the api-server stalled for
    30 s and more on a lock while the scheduled deltas DAG's first task started (CI runs after
    the in-process tests, 2 cores); PostgreSQL, as a deployment has, locks rows."""
    root = Path(tempfile.mkdtemp(prefix="mailmigrate-standalone-"))
    scenario = MigrationScenario("e2e_standalone", root, root / "plans", legacy_imap, modern_imap)
    postgres = PostgresServer()
    stack = AirflowStack(root / "airflow", plans_dir=root / "plans", state_dir=root / "state",
                         database_url=postgres.url)  # fmt: skip
    try:
        postgres.start()
        scenario.start()
        stack.start_standalone()
        dag = scenario.prepare_airflow(stack)
        yield StandaloneMigration(stack, scenario, dag, root / "state")
    finally:
        stack.stop()
        scenario.stop()
        postgres.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def standalone_run(standalone_migration: StandaloneMigration) -> RunRecord:
    """One full run of the migration (initial copy, MX flip, delta), finished."""
    return standalone_migration.scenario.run_migration(standalone_migration.stack)
