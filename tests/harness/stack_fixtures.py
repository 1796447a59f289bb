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
    """``airflow standalone`` (SQLite, LocalExecutor) with the plan of a two-account migration,
    its connections created and its DAG unpaused through the REST API."""
    root = Path(tempfile.mkdtemp(prefix="mailmigrate-standalone-"))
    scenario = MigrationScenario("e2e_standalone", root, root / "plans", legacy_imap, modern_imap)
    stack = AirflowStack(root / "airflow", plans_dir=root / "plans", state_dir=root / "state")
    try:
        scenario.start()
        stack.start_standalone()
        dag = scenario.prepare_airflow(stack)
        yield StandaloneMigration(stack, scenario, dag, root / "state")
    finally:
        stack.stop()
        scenario.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def standalone_run(standalone_migration: StandaloneMigration) -> RunRecord:
    """One full run of the migration (initial copy, MX flip, delta), finished."""
    return standalone_migration.scenario.run_migration(standalone_migration.stack)
