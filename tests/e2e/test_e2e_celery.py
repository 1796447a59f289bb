"""The migration distributed as production runs it: CeleryExecutor, PostgreSQL, Redis, two workers.

PostgreSQL (the metadata DB and Celery's result backend) and Redis (the broker) are Debian's
servers, started on loopback in temporary directories. Airflow runs as separate processes:
``db migrate``, then api-server, scheduler, dag-processor, triggerer and two Celery workers (one
task at a time each, distinct ``--celery-hostname`` and host names, one shared sync state dir).
A two-account migration runs through the REST API with the MX flip in the middle; both workers
run tasks, the two accounts' initial copies on different workers, and the result on the mail
servers is exact. A proxy in front of the destination holds each account's first APPEND until
the other account's copy appends too: with one task per worker, two copies appending at the same
moment are on two workers, whichever order the scheduler queues them in.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from harness.airflow_stack import AirflowStack
from harness.e2e_migration import SOURCE_FOLDERS, MigrationScenario, RunRecord
from harness.postgres import PostgresServer
from harness.redis_server import RedisServer
from harness.rendezvous import AppendRendezvous

pytestmark = pytest.mark.slow
WORKERS = ("worker-a", "worker-b")
TRIGGER_CLASS = "mailmigrate_airflow.triggers.MxPropagationTrigger"


@dataclass
class CeleryDeployment:
    stack: AirflowStack
    scenario: MigrationScenario
    postgres: PostgresServer
    redis: RedisServer
    rendezvous: AppendRendezvous
    state_dir: Path


@pytest.fixture(scope="module")
def celery_deployment(legacy_imap, modern_imap) -> Iterator[CeleryDeployment]:
    root = Path(tempfile.mkdtemp(prefix="mailmigrate-celery-"))
    postgres, redis = PostgresServer(), RedisServer(root / "redis")
    rendezvous = AppendRendezvous(modern_imap.host, modern_imap.port)
    scenario = MigrationScenario(
        "e2e_celery", root, root / "plans", legacy_imap, modern_imap,
        destination_port=rendezvous.port,
    )  # fmt: skip
    stack = AirflowStack(
        root / "airflow",
        plans_dir=root / "plans",
        state_dir=root / "state",
        database_url=postgres.url,
        broker_url=redis.url(),
    )
    try:
        postgres.start()
        redis.start()
        scenario.start()
        stack.start_components(workers=WORKERS)
        scenario.prepare_airflow(stack)
        yield CeleryDeployment(stack, scenario, postgres, redis, rendezvous, root / "state")
    finally:
        stack.stop()
        rendezvous.close()
        scenario.stop()
        redis.stop()
        postgres.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def celery_run(celery_deployment: CeleryDeployment) -> RunRecord:
    return celery_deployment.scenario.run_migration(celery_deployment.stack)


def test_the_components_run_on_postgres_and_redis(celery_deployment):
    stack = celery_deployment.stack
    assert stack.executor == "CeleryExecutor"
    health = stack.health() or {}
    for part in ("metadatabase", "scheduler", "triggerer", "dag_processor"):
        assert health[part]["status"] == "healthy", health
    assert sorted(stack.processes) == sorted(
        ["api-server", "scheduler", "dag-processor", "triggerer"] + [f"worker-{w}" for w in WORKERS]
    )
    # The metadata lives in PostgreSQL: the DAG the dag-processor stored is there.
    dag_id = celery_deployment.scenario.dag_id
    postgres = celery_deployment.postgres
    rows = postgres.psql(f"SELECT dag_id FROM dag WHERE dag_id = '{dag_id}'", database="airflow")
    assert rows.strip() == dag_id


def test_a_migration_spreads_over_both_workers(celery_deployment, celery_run):
    stack, scenario = celery_deployment.stack, celery_deployment.scenario
    record = celery_run
    states = {task: ti["state"] for task, ti in record.task_instances.items()}
    assert record.run["state"] == "success", states
    assert set(states.values()) == {"success"}, states

    placement = {task: ti["hostname"] for task, ti in record.task_instances.items()}
    assert set(placement.values()) == set(WORKERS), placement
    assert {ti["queue"] for ti in record.task_instances.values()} == {"default"}
    # The two initial copies were appending at the same moment (the proxy held the first until
    # the second came), and a worker runs one task at a time: so they ran on different workers.
    rendezvous = celery_deployment.rendezvous
    assert rendezvous.met, (rendezvous.arrivals, placement)
    assert sorted(rendezvous.arrivals) == sorted(a.destination_user for a in scenario.accounts)
    copies = {placement[f"{account.group_id}.initial_copy"] for account in scenario.accounts}
    assert copies == set(WORKERS), placement
    for account in scenario.accounts:
        assert placement[f"{account.group_id}.delta_copy"] in WORKERS, placement
    for worker in WORKERS:  # each worker's own log shows the task instances it executed
        log = stack.log_text(f"worker-{worker}")
        # (by task id: an account's instance of a mapped step is logged as account.<step>)
        ran = {ti["task_id"] for ti in record.task_instances.values() if ti["hostname"] == worker}
        assert all(task in log for task in ran), (
            worker,
            ran,
            stack.log_tails([f"worker-{worker}"]),
        )

    for ti in record.deferred.values():
        assert ti["trigger"]["classpath"] == TRIGGER_CLASS, ti
        assert ti["triggerer_job"]["job_type"] == "TriggererJob", ti

    scenario.assert_copied(stack, record.run_id)


def test_logs_of_both_workers_are_readable_through_the_api(celery_deployment, celery_run):
    stack, scenario = celery_deployment.stack, celery_deployment.scenario
    api = stack.api("viewer")
    for account in scenario.accounts:
        task_id = f"{account.group_id}.initial_copy"
        log = api.task_log(scenario.dag_id, celery_run.run_id, task_id)
        assert f"initial pass: {sum(SOURCE_FOLDERS.values())} copied" in log, log[-3000:]
        assert not any(secret in log for secret in scenario.secrets)
    state_files = [p for p in celery_deployment.state_dir.rglob("*") if p.is_file()]
    assert state_files, "the workers wrote no sync state into the shared state dir"
